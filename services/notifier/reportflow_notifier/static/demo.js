// reportflow demo page: log in, start reports, watch them over Socket.IO, download the files.
// Everything is same-origin: /v1/auth, /v1/reports and /socket.io behind one host.
(function () {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const state = { access: null, refresh: null, user: null, socket: null, lastSeq: 0, reports: new Map() };

  function seqKey() { return "reportflow.last_seq." + state.user.id; }
  function remember(seq) {
    if (seq > state.lastSeq) { state.lastSeq = seq; sessionStorage.setItem(seqKey(), String(seq)); }
  }

  async function api(method, path, body, retried) {
    const headers = { Authorization: "Bearer " + state.access };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const resp = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    if (resp.status === 401 && !retried && await refreshTokens()) return api(method, path, body, true);
    return resp;
  }

  async function problemText(resp) {
    try {
      const p = await resp.json();
      const fields = (p.errors || []).map((e) => e.field + ": " + e.message).join("; ");
      return (p.detail || p.title || resp.statusText) + (fields ? " (" + fields + ")" : "");
    } catch (_) { return resp.status + " " + resp.statusText; }
  }

  async function refreshTokens() {
    if (!state.refresh) return false;
    const resp = await fetch("/v1/auth/refresh", { method: "POST", headers: { Authorization: "Bearer " + state.refresh } });
    if (!resp.ok) { logout(); return false; }
    const t = await resp.json();
    state.access = t.access_token; state.refresh = t.refresh_token;
    return true;
  }

  async function login(event) {
    event.preventDefault();
    $("login-error").textContent = "";
    const resp = await fetch("/v1/auth/login", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ email: $("email").value, password: $("password").value }),
    });
    if (!resp.ok) { $("login-error").textContent = await problemText(resp); return; }
    const t = await resp.json();
    state.access = t.access_token; state.refresh = t.refresh_token;
    state.user = await (await api("GET", "/v1/auth/me")).json();
    state.lastSeq = Number(sessionStorage.getItem(seqKey()) || 0);
    $("who").textContent = state.user.email;
    $("login-view").hidden = true; $("app-view").hidden = false;
    await loadReports();
    connect();
  }

  async function logout() {
    if (state.access) await fetch("/v1/auth/logout", { method: "POST", headers: { Authorization: "Bearer " + state.access } });
    if (state.socket) state.socket.disconnect();
    Object.assign(state, { access: null, refresh: null, user: null, socket: null, lastSeq: 0 });
    state.reports.clear();
    $("reports").querySelector("tbody").innerHTML = ""; $("notifications").innerHTML = "";
    $("who").textContent = ""; $("app-view").hidden = true; $("login-view").hidden = false;
    setSocketState("offline");
  }

  function setSocketState(text) {
    const el = $("socket-state");
    el.textContent = text; el.dataset.state = text;
    el.className = "state " + (text === "online" ? "on" : "off");
  }

  function connect() {
    // auth is a function so every reconnect sends the current token and the last seq seen: the server replays the rest.
    const socket = io({ auth: (cb) => cb({ token: state.access, last_seq: state.lastSeq }), transports: window.REPORTFLOW_TRANSPORTS || ["websocket", "polling"] });
    state.socket = socket;
    socket.on("connect", () => { setSocketState("online"); $("socket-toggle").textContent = "Go offline"; });
    socket.on("disconnect", () => setSocketState("offline"));
    socket.on("connect_error", async (err) => {
      setSocketState("refused");
      if (err && err.data && err.data.code === "unauthorized" && await refreshTokens()) socket.connect();
    });
    for (const name of ["report.progress", "report.succeeded", "report.failed", "report.cancelled"]) {
      socket.on(name, (payload) => onEvent(name, payload));
    }
  }

  function onEvent(name, payload) {
    if (payload.seq <= state.lastSeq) return; // already shown (the server does not resend, this is belt and braces)
    remember(payload.seq);
    // A report started elsewhere (another tab, the API) or while offline: show it now, details follow.
    if (!state.reports.has(payload.report_id)) fetchReport(payload.report_id);
    const r = state.reports.get(payload.report_id) || { id: payload.report_id, type: "?", created_at: payload.time };
    if (name === "report.progress") { r.status = "running"; r.progress = payload.progress; }
    if (name === "report.succeeded") { r.status = "succeeded"; r.progress = 1; r.rows = payload.rows; r.download_url = payload.download_url; }
    if (name === "report.failed") { r.status = "failed"; r.error = payload.error; }
    if (name === "report.cancelled") { r.status = "cancelled"; }
    state.reports.set(r.id, r);
    render();
    if (name !== "report.progress") {
      const li = document.createElement("li");
      li.className = "notification"; li.dataset.event = name; li.dataset.reportId = payload.report_id;
      li.textContent = "#" + payload.seq + " " + name + " " + payload.report_id.slice(0, 8) +
        (payload.rows !== undefined ? " (" + payload.rows + " rows)" : "") + (payload.error ? ": " + payload.error : "");
      $("notifications").prepend(li);
    }
  }

  async function fetchReport(id) {
    const resp = await api("GET", "/v1/reports/" + encodeURIComponent(id));
    if (!resp.ok) return;
    const fresh = await resp.json();
    // What events said since wins (they are newer or as new); type and creation time come from the API.
    state.reports.set(id, Object.assign(fresh, state.reports.get(id), { type: fresh.type, created_at: fresh.created_at }));
    render();
  }

  async function loadReports() {
    const resp = await api("GET", "/v1/reports?limit=50");
    if (!resp.ok) return;
    for (const r of (await resp.json()).items) state.reports.set(r.id, r);
    render();
  }

  function render() {
    const rows = [...state.reports.values()].sort((a, b) => String(b.created_at).localeCompare(String(a.created_at)));
    const tbody = $("reports").querySelector("tbody");
    tbody.innerHTML = "";
    for (const r of rows) {
      const tr = document.createElement("tr");
      tr.dataset.reportId = r.id; tr.dataset.status = r.status;
      const cells = [new Date(r.created_at).toLocaleTimeString(), r.type, r.status, null, r.rows ?? "", null];
      cells.forEach((value, i) => {
        const td = document.createElement("td");
        if (i === 2) td.className = "status status-" + r.status;
        if (i === 3) { const p = document.createElement("progress"); p.max = 1; p.value = r.progress || 0; td.append(p); }
        else if (i === 5) td.append(actionFor(r));
        else td.textContent = value;
        tr.append(td);
      });
      tbody.append(tr);
    }
  }

  function actionFor(r) {
    const b = document.createElement("button");
    b.type = "button"; b.className = "secondary";
    if (r.status === "succeeded") { b.textContent = "Download"; b.classList.add("download"); b.onclick = () => download(r); }
    else if (r.status === "queued" || r.status === "running") { b.textContent = "Cancel"; b.classList.add("cancel"); b.onclick = () => api("DELETE", "/v1/reports/" + r.id); }
    else { b.hidden = true; }
    return b;
  }

  async function download(r) {
    // The API answers with a redirect to a short-lived link; fetch follows it and we save the bytes.
    const resp = await api("GET", "/v1/reports/" + r.id + "/download");
    if (!resp.ok) { $("form-error").textContent = await problemText(resp); return; }
    const url = URL.createObjectURL(await resp.blob());
    const a = document.createElement("a");
    a.href = url; a.download = r.type + "-" + r.id + (r.params && r.params.format === "csv" ? ".csv" : ".xlsx"); document.body.append(a); a.click(); a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  }

  async function createReport(event) {
    event.preventDefault();
    $("form-error").textContent = "";
    const type = $("report-type").value;
    const params = type === "demo" ? { rows: Number($("rows").value), columns: Number($("columns").value), seed: Number($("seed").value), format: $("format").value } : {};
    const resp = await api("POST", "/v1/reports", { type, params });
    if (!resp.ok) { $("form-error").textContent = await problemText(resp); return; }
    const r = await resp.json();
    state.reports.set(r.id, Object.assign(state.reports.get(r.id) || {}, r));
    render();
  }

  function toggleSocket() {
    if (!state.socket) return;
    if (state.socket.connected) { state.socket.disconnect(); $("socket-toggle").textContent = "Go online"; }
    else { state.socket.connect(); }
  }

  $("login-form").addEventListener("submit", login);
  $("report-form").addEventListener("submit", createReport);
  $("logout-button").addEventListener("click", logout);
  $("socket-toggle").addEventListener("click", toggleSocket);
  $("report-type").addEventListener("change", () => {
    const demo = $("report-type").value === "demo";
    for (const id of ["rows", "columns", "seed", "format"]) $(id).disabled = !demo;
  });
})();
