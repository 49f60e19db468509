// The one place that holds the tokens of the signed-in user, refreshes them before the access token
// expires, and makes API calls with them. Tokens live in memory only: a second tab holding the same refresh
// token would make the two rotate it in turn, and the API revokes a login whose refresh token is reused.

const REFRESH_AHEAD = 0.8; // refresh when 80 % of the access token's life has passed
const MIN_REFRESH_DELAY_MS = 5000;
const RETRY_REFRESH_MS = 15000; // after a refresh that failed for want of network

export class ApiError extends Error {
  /** A failed API call: `status` (0 when the network failed) and the problem+json body when there is one. */
  constructor(status, problem, fallback) {
    super((problem && (problem.detail || problem.title)) || fallback);
    this.status = status;
    this.problem = problem || null;
    this.code = problem && problem.code;
  }
}

/** Read an error answer as problem+json (every reportflow error is one); anything else becomes an ApiError too. */
export async function problemOf(resp) {
  let problem = null;
  try { problem = await resp.json(); } catch (_) { /* not JSON: an HTML page from something in between */ }
  return new ApiError(resp.status, problem, `${resp.status} ${resp.statusText || "error"}`);
}

/** fetch that turns a network failure into an ApiError with status 0. */
export async function send(path, init) {
  try {
    return await fetch(path, init);
  } catch (_) {
    throw new ApiError(0, null, navigator.onLine === false ? "You are offline." : "The server could not be reached.");
  }
}

export class Session {
  /**
   * onTokens(accessToken): called after every new pair (sign-in and each refresh);
   * onEnd(reason): the login is over (refresh refused, or signed out) and the page must ask again.
   */
  constructor({ onTokens = () => {}, onEnd = () => {} } = {}) {
    this.onTokens = onTokens;
    this.onEnd = onEnd;
    this.access = null;
    this.refreshToken = null;
    this.timer = null;
    this.refreshing = null; // one refresh at a time: two would present the same refresh token twice
  }

  get active() { return this.access !== null; }

  /** Take a login or refresh answer: {access_token, refresh_token, expires_in}. */
  set(tokens) {
    this.access = tokens.access_token;
    this.refreshToken = tokens.refresh_token;
    this.schedule(Math.max(MIN_REFRESH_DELAY_MS, (tokens.expires_in || 0) * 1000 * REFRESH_AHEAD));
    this.onTokens(this.access);
  }

  schedule(delay) {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.refresh(), delay);
  }

  /** Exchange the refresh token for a new pair; true when it worked. Concurrent callers share one request. */
  refresh() {
    if (!this.refreshToken) return Promise.resolve(false);
    if (!this.refreshing) {
      const presented = this.refreshToken;
      this.refreshing = (async () => {
        let resp;
        try {
          resp = await send("/v1/auth/refresh", { method: "POST", headers: { Authorization: `Bearer ${presented}` } });
        } catch (_) {
          this.schedule(RETRY_REFRESH_MS); // offline: keep the login, try again later
          return false;
        }
        if (resp.ok) {
          this.set(await resp.json());
          return true;
        }
        if (resp.status === 401 || resp.status === 403) {
          this.end("expired");
        } else {
          this.schedule(RETRY_REFRESH_MS); // 429 or 5xx: the login is still good
        }
        return false;
      })().finally(() => { this.refreshing = null; });
    }
    return this.refreshing;
  }

  /** An API call with the access token; a 401 gets one refresh and one retry. Returns the Response. */
  async fetch(method, path, body, extraHeaders = {}) {
    for (let attempt = 0; ; attempt += 1) {
      if (!this.access) throw new ApiError(401, null, "You are signed out.");
      const headers = { ...extraHeaders, Authorization: `Bearer ${this.access}` };
      if (body !== undefined) headers["Content-Type"] = "application/json";
      const resp = await send(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
      if (resp.status !== 401 || attempt > 0 || !(await this.refresh())) return resp;
    }
  }

  /** Like fetch, but an error answer throws its ApiError and a success gives its JSON (null when empty). */
  async json(method, path, body, extraHeaders) {
    const resp = await this.fetch(method, path, body, extraHeaders);
    if (!resp.ok) throw await problemOf(resp);
    return resp.status === 204 ? null : resp.json();
  }

  /** Sign out: revoke the login on the server (best effort), then forget the tokens. */
  async signOut() {
    const access = this.access;
    this.end("signed-out");
    if (access) {
      try {
        await send("/v1/auth/logout", { method: "POST", headers: { Authorization: `Bearer ${access}` } });
      } catch (_) { /* offline: the tokens are gone from this page; they expire on their own */ }
    }
  }

  end(reason) {
    const wasActive = this.active;
    clearTimeout(this.timer);
    this.access = this.refreshToken = null;
    if (wasActive) this.onEnd(reason);
  }
}

/** POST /v1/auth/login; returns the token answer or throws an ApiError. */
export async function logIn(email, password) {
  const resp = await send("/v1/auth/login", {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ email, password }),
  });
  if (!resp.ok) throw await problemOf(resp);
  return resp.json();
}

/** POST /v1/auth/register; returns the new user or throws an ApiError (404 `not_found`: registration is off). */
export async function register(email, password) {
  const resp = await send("/v1/auth/register", {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ email, password }),
  });
  if (!resp.ok) throw await problemOf(resp);
  return resp.json();
}

/**
 * Whether this server lets people sign up. Auth answers 404 to the register endpoint when registration is
 * off and validates the body otherwise, so an empty body tells which without creating anything.
 * Unknown (network trouble): assume it is on; a real attempt will say.
 */
export async function registrationOpen() {
  try {
    const resp = await send("/v1/auth/register", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: "{}",
    });
    return resp.status !== 404;
  } catch (_) {
    return true;
  }
}
