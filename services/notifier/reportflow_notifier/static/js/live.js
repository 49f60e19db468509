// The Socket.IO connection: one per signed-in page, on the page's own origin, recovering by itself.
//
// - socketAuth() is the one place that builds the connect `auth` ({token, last_seq, epoch}); it runs on every
//   (re)connect, so a reconnect carries the current token and the (epoch, last seq) handled, and the server
//   replays what was missed.
// - onResync({initial}) is called whenever the page cannot rely on replay (the first connect, a reconnect
//   before any event gave a seq, a gap in seq, an `events.reset` from the server) and must reload its list
//   over HTTP.
// - tokensChanged(token) is where a fresh access token reaches the open socket (`auth.refresh`), so the socket
//   outlives the old token's expiry (docs/events.md).
// - `session.ended` is the server ending the socket's login: logged out or revoked signs the page out; an
//   expired token gets one refresh and a reconnect before the page gives up.
import { EVENTS } from "./model.js";

const WATCHDOG_MS = 5000; // how often a connection that is down and not retrying is started again
const UNAVAILABLE_RETRY_MS = 3000;
const REFRESH_ACK_MS = 10000; // how long the server has to acknowledge `auth.refresh`

export class Live {
  /**
   * session: the Session (its `access` token, its refresh());
   * onEvent(name, payload, replayed): a report event, in seq order, each once;
   * onState(state): "connecting" | "online" | "offline";
   * onResync({initial}): reload the reports over HTTP (initial: this is the first connection).
   */
  constructor({ session, onEvent, onState, onResync, transports }) {
    Object.assign(this, { session, onEvent, onState, onResync });
    this.transports = transports || ["websocket", "polling"];
    this.socket = null;
    this.lastSeq = null; // null: nothing handled on this page yet, so nothing to replay from
    this.epoch = null; // the numbering lastSeq belongs to (docs/events.md)
    this.watchdog = null;
    this.state = null;
    this.connections = 0;
    this.onBrowserOffline = () => this.browserOffline();
    this.onBrowserOnline = () => this.reconnectNow();
  }

  socketAuth() {
    const auth = { token: this.session.access };
    if (this.lastSeq !== null) auth.last_seq = this.lastSeq;
    if (this.lastSeq !== null && this.epoch) auth.epoch = this.epoch;
    return auth;
  }

  start() {
    this.stop();
    this.setState("connecting");
    const socket = window.io({ auth: (cb) => cb(this.socketAuth()), transports: this.transports,
                               reconnectionDelayMax: 5000 });
    this.socket = socket;
    socket.on("connect", () => {
      this.setState("online");
      // Replay covers a reconnect that knows where it was; without a seq, only HTTP knows what happened.
      this.connections += 1;
      if (this.lastSeq === null) this.onResync({ initial: this.connections === 1 });
    });
    socket.on("disconnect", () => this.setState(navigator.onLine === false ? "offline" : "connecting"));
    socket.on("connect_error", (err) => this.refused(err));
    for (const name of EVENTS) socket.on(name, (payload) => this.received(name, payload));
    socket.on("events.reset", (payload) => this.reset(payload));
    socket.on("session.ended", (payload) => this.ended(payload));
    window.addEventListener("offline", this.onBrowserOffline);
    window.addEventListener("online", this.onBrowserOnline);
    this.watchdog = setInterval(() => this.keepAlive(), WATCHDOG_MS);
  }

  stop() {
    clearInterval(this.watchdog);
    window.removeEventListener("offline", this.onBrowserOffline);
    window.removeEventListener("online", this.onBrowserOnline);
    if (this.socket) {
      this.socket.removeAllListeners();
      this.socket.disconnect();
    }
    this.socket = null;
    this.lastSeq = null;
    this.epoch = null;
  }

  received(name, payload) {
    if (typeof payload.seq !== "number") return;
    const sameEpoch = !payload.epoch || !this.epoch || payload.epoch === this.epoch;
    if (sameEpoch && this.lastSeq !== null && payload.seq <= this.lastSeq) return; // already handled
    const gap = this.lastSeq !== null && (!sameEpoch || payload.seq > this.lastSeq + 1);
    this.lastSeq = payload.seq;
    if (payload.epoch) this.epoch = payload.epoch;
    this.onEvent(name, payload);
    if (gap) this.onResync({ initial: false }); // the server's history no longer holds what came in between
  }

  /** The server cannot replay from our point (its event log was lost or expired): continue from its point
   * and reload the list over HTTP, which holds every report's current state. */
  reset(payload) {
    this.epoch = payload.epoch;
    this.lastSeq = payload.seq;
    this.onResync({ initial: false });
  }

  async refused(err) {
    const code = err && err.data && err.data.code;
    if (this.socket && this.socket.active) {
      this.setState(navigator.onLine === false ? "offline" : "connecting"); // Socket.IO retries by itself
      return;
    }
    // Refused by the server: Socket.IO does not retry; we do, with a fresh token if that was the reason.
    this.setState("offline");
    if (code === "unauthorized") {
      if (await this.session.refresh()) this.connectAgain();
    } else {
      setTimeout(() => this.connectAgain(), UNAVAILABLE_RETRY_MS);
    }
  }

  connectAgain() {
    if (this.socket && !this.socket.connected && this.session.active) {
      this.setState("connecting");
      this.socket.connect();
    }
  }

  /** The browser says the network is gone: say so now rather than after the heartbeat times out. */
  browserOffline() {
    this.setState("offline");
    if (this.socket) this.socket.disconnect(); // the watchdog or the "online" event starts it again
  }

  /** The network is back: connect at once instead of waiting for the back-off. */
  reconnectNow() {
    if (!this.socket || this.socket.connected) return;
    this.socket.disconnect();
    this.connectAgain();
  }

  keepAlive() {
    if (this.socket && !this.socket.connected && !this.socket.active && navigator.onLine !== false) this.connectAgain();
  }

  /** A fresh access token: a connected socket takes it at once; any other sends it on its next connect
   * (socketAuth()). Refused or unanswered, the socket connects again with it rather than expire. */
  tokensChanged(token) {
    const socket = this.socket;
    if (!socket || !socket.connected) return;
    socket.timeout(REFRESH_ACK_MS).emit("auth.refresh", { token }, (err, ack) => {
      if (!err && ack && ack.ok) return;
      if (this.socket === socket && this.session.access === token) {
        socket.disconnect();
        this.connectAgain();
      }
    });
  }

  /** The server ended this socket's login (session.ended {reason}) and disconnects it. */
  async ended(payload) {
    const reason = payload && payload.reason;
    if (reason === "expired" && await this.session.refresh()) {
      this.connectAgain(); // the token ran out before the page refreshed it (e.g. the computer slept)
      return;
    }
    this.session.end(reason === "logged_out" || reason === "revoked" ? reason : "expired");
  }

  setState(state) {
    if (state === this.state) return;
    this.state = state;
    this.onState(state);
  }
}
