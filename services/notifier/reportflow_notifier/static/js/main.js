// reportflow's web page: sign in or up, start reports, watch them live, download, cancel, delete.
// Same origin for everything: /v1/auth/*, /v1/reports*, /socket.io. No build step: native ES modules.
//
// Stable hooks for tests and tools (keep them when changing the page):
//   views        #signin-view, #signup-view, #app-view (one visible at a time; the others [hidden])
//   sign in      #signin-form #signin-email #signin-password #signin-button #signin-error #signin-notice,
//                #show-signup inside #signup-offer[data-registration="open"|"closed"] (hidden when closed;
//                no data-registration until the server has answered),
//                #demo-users (only when the server's config lists demo accounts) with
//                button[data-demo-email] per account
//   sign up      #signup-form #signup-email #signup-password #signup-button #signup-error #show-signin
//   header       #session-bar, #who (the signed-in email), #signout-button,
//                #socket-state[data-state="connecting"|"online"|"offline"]
//   new report   #report-form #report-type #rows #columns #seed #format #create-button #form-error;
//                field errors in #<field>-error, the field then has aria-invalid="true"
//   list         #reports tbody tr#report-<id>[data-report-id][data-status][data-progress (0-100)],
//                its buttons .download .cancel .delete; #list-empty, #more-button (next page), #list-error
//   toasts       #toasts .toast[data-event="report.succeeded"|...][data-report-id], each with a link
//                a.toast-link to its row and .toast-close; a succeeded one also has button.download
//   dialog       #confirm-dialog with #confirm-yes / #confirm-no (delete confirmation)
//   test hook    window.REPORTFLOW_TRANSPORTS (set before load) forces Socket.IO's transports (otherwise the
//                server's config says which: #page-config {"socket_transports": [...], "demo_users": [...]})
import { Live } from "./live.js";
import {
  ACTIVE, FINISHED, ReportStore, TYPE_NAMES, describe, fieldErrors, fileExtension, formatBytes, formatCount,
  formatDateTime, formatPercent, formatTimeLeft, formatWaiting,
} from "./model.js";
import { ApiError, Session, logIn, problemOf, register, registrationOpen } from "./session.js";

const PAGE_SIZE = 20;
const QUEUE_REFRESH_MS = 10000;
const TOAST_MS = 20000; // succeeded and cancelled toasts leave after this (not while hovered or focused)
const MAX_TOASTS = 5;

const $ = (id) => document.getElementById(id);
const config = JSON.parse($("page-config").textContent || "{}");
const store = new ReportStore();
const rows = new Map(); // report id -> its <tr>
const session = new Session({
  onTokens: (token) => live && live.tokensChanged(token),
  onEnd: (reason) => signedOut(reason),
});
let live = null;
let nextCursor = null;
let olderLoaded = false;
let reloading = Promise.resolve();
let arrivedDuringLoad = null; // ids heard of while the first page loads (see loadFirstPage)

/** Build an element: h("p", {class: "x", dataset: {a: 1}, onclick}, "text", child, ...). */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "dataset") Object.assign(el.dataset, value);
    else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "class") el.className = value;
    else el.setAttribute(key, value === true ? "" : value);
  }
  el.append(...children.filter((c) => c !== null && c !== undefined && c !== false));
  return el;
}

const hiddenText = (text) => h("span", { class: "visually-hidden" }, text);

// --- views ------------------------------------------------------------------------------------------------

const VIEWS = { signin: "signin-view", signup: "signup-view", app: "app-view" };
const TITLES = { signin: "signin-title", signup: "signup-title", app: "app-title" };

function show(view, { focus = true } = {}) {
  for (const [name, id] of Object.entries(VIEWS)) $(id).hidden = name !== view;
  $("session-bar").hidden = view !== "app";
  document.title = view === "app" ? "Your reports · reportflow" : view === "signup" ? "Create an account · reportflow"
    : "Sign in · reportflow";
  if (focus) $(TITLES[view]).focus();
}

/**
 * Show an API error: each field error under its input (`inputId(field)`, its message in `<id>-error`),
 * anything else on the form's error line; then focus the first field in error.
 */
function showErrors(form, inputId, error, formErrorId) {
  clearErrors(form);
  const byField = fieldErrors(error.problem);
  const rest = [];
  let first = null;
  for (const [field, message] of Object.entries(byField)) {
    const input = $(inputId(field));
    if (input && !input.disabled && form.contains(input)) {
      input.setAttribute("aria-invalid", "true");
      const label = form.querySelector(`label[for="${input.id}"]`);
      $(`${input.id}-error`).textContent = label ? `${label.textContent.trim()} ${message}.` : message;
      first = first || input;
    } else {
      rest.push(`${field}: ${message}`);
    }
  }
  const summary = Object.keys(byField).length ? (rest.length ? rest.join("; ") : "Please correct the fields marked above.")
    : error.message;
  $(formErrorId).textContent = summary;
  (first || form.querySelector("button[type=submit]")).focus();
}

function clearErrors(form) {
  for (const input of form.querySelectorAll("[aria-invalid]")) input.removeAttribute("aria-invalid");
  for (const p of form.querySelectorAll(".field-error, .form-error")) p.textContent = "";
}

async function busy(button, work) {
  button.disabled = true;
  button.setAttribute("aria-busy", "true");
  try { return await work(); } finally { button.disabled = false; button.removeAttribute("aria-busy"); }
}

// --- signing in and out -----------------------------------------------------------------------------------

function initSignIn() {
  const demo = config.demo_users || [];
  if (demo.length) {
    $("signin-email").value = demo[0].email;
    $("signin-password").value = demo[0].password;
    for (const account of demo) {
      $("demo-user-list").append(h("li", {},
        h("button", { type: "button", class: "button quiet", dataset: { demoEmail: account.email },
                      onclick: () => signInAs(account) }, "Sign in as ", h("strong", {}, account.email)),
        " ", h("span", { class: "hint" }, "password: ", h("code", {}, account.password))));
    }
    $("demo-users").hidden = false;
  }
  registrationOpen().then((open) => {
    $("signup-offer").hidden = !open;
    $("signup-offer").dataset.registration = open ? "open" : "closed";
  });
}

function signInAs(account) {
  $("signin-email").value = account.email;
  $("signin-password").value = account.password;
  $("signin-form").requestSubmit();
}

function notice(text) {
  $("signin-notice").textContent = text || "";
  $("signin-notice").hidden = !text;
}

async function onSignIn(event) {
  event.preventDefault();
  const form = $("signin-form");
  clearErrors(form);
  const email = $("signin-email").value.trim(), password = $("signin-password").value;
  if (!email || !password) {
    if (!email) missing("signin-email", "Enter your email address.");
    if (!password) missing("signin-password", "Enter your password.");
    form.querySelector("[aria-invalid]").focus();
    return;
  }
  await busy($("signin-button"), async () => {
    try {
      await startApp(await logIn(email, password));
    } catch (error) {
      showErrors(form, (f) => `signin-${f}`, error, "signin-error");
    }
  });
}

function missing(id, message) {
  $(id).setAttribute("aria-invalid", "true");
  $(`${id}-error`).textContent = message;
}

async function onSignUp(event) {
  event.preventDefault();
  const form = $("signup-form");
  clearErrors(form);
  const email = $("signup-email").value.trim(), password = $("signup-password").value;
  await busy($("signup-button"), async () => {
    try {
      await register(email, password);
    } catch (error) {
      if (error.status === 404) { // switched off since the page loaded
        $("signup-offer").hidden = true;
        show("signin");
        notice("Registration is switched off on this server. Ask its administrator for an account.");
      } else if (error.status === 409) {
        showErrors(form, (f) => `signup-${f}`,
                   new ApiError(409, { errors: [{ field: "email", message: error.message }] }), "signup-error");
      } else {
        showErrors(form, (f) => `signup-${f}`, error, "signup-error");
      }
      return;
    }
    try {
      await startApp(await logIn(email, password));
      toast({ kind: "info", title: "Welcome to reportflow", text: "Your account is ready. Start a report below." });
    } catch (error) {
      show("signin");
      $("signin-email").value = email;
      notice("Your account is ready; please sign in.");
    }
  });
}

async function startApp(tokens) {
  session.set(tokens);
  let me;
  try {
    me = await session.json("GET", "/v1/auth/me");
  } catch (error) {
    session.end("unfinished"); // signed in, yet the page cannot go on: drop the tokens, show why
    throw error;
  }
  notice("");
  $("signin-password").value = "";
  $("signup-password").value = "";
  $("who").textContent = me.email;
  store.clear();
  rows.clear();
  $("reports").tBodies[0].replaceChildren();
  nextCursor = null;
  olderLoaded = false;
  show("app");
  live = new Live({ session, onEvent, onState: socketState, onResync: ({ initial }) => reloadList({ resync: !initial }),
                    transports: window.REPORTFLOW_TRANSPORTS || config.socket_transports });
  live.start();
  await reloadList();
}

// Why the page is back at sign-in (Session.end's reasons, and the server's session.ended reasons).
const END_NOTICES = {
  expired: "Your session has ended. Please sign in again.",
  logged_out: "This session was signed out. Please sign in again.",
  revoked: "This session was revoked for your security (its sign-in was used twice). Please sign in again.",
};

function signedOut(reason) {
  if ($("confirm-dialog").open) $("confirm-dialog").close();
  if (live) live.stop();
  live = null;
  store.clear();
  rows.clear();
  $("reports").tBodies[0].replaceChildren();
  $("toasts").replaceChildren();
  $("who").textContent = "";
  const demo = config.demo_users || [];
  if (demo.length) $("signin-password").value = demo[0].email === $("signin-email").value ? demo[0].password : "";
  if (reason !== "unfinished") {
    notice(END_NOTICES[reason] || "You have signed out.");
    show("signin");
  }
}

// --- the connection indicator -----------------------------------------------------------------------------

const STATE_TEXT = { connecting: "Connecting…", online: "Live", offline: "Offline, reconnecting…" };

function socketState(state) {
  $("socket-state").dataset.state = state;
  $("socket-state-text").textContent = STATE_TEXT[state] || state;
}

// --- the list ---------------------------------------------------------------------------------------------

/**
 * The one place that (re)loads the list over HTTP: at sign-in, and whenever the socket cannot replay what
 * the page missed (`resync`: a reconnect before any event gave it a seq, a gap in seq, or the server
 * saying its history is gone). Reports of the first page's time span that the API no longer has are
 * dropped; newer ones (just created) and older pages already shown stay. On a resync, what finished
 * meanwhile gets its toast, as replayed events would have given it: reports the page knew as queued or
 * running, and reports newer than any it knew.
 */
function reloadList(options) {
  reloading = reloading.then(() => loadFirstPage(options)); // one at a time, in order
  return reloading;
}

async function loadFirstPage({ resync = false } = {}) {
  if (!session.active) return;
  let page;
  const newestKnown = store.sorted().map((r) => r.created_at).filter(Boolean)[0] || "";
  const arrived = new Set(); // reports created or heard of while the request runs may postdate its answer
  arrivedDuringLoad = arrived;
  try {
    page = await session.json("GET", `/v1/reports?limit=${PAGE_SIZE}`);
  } catch (error) {
    $("list-error").textContent = `Could not load your reports: ${error.message}`;
    return;
  } finally {
    arrivedDuringLoad = null;
  }
  $("list-error").textContent = "";
  const listed = new Set(page.items.map((r) => r.id));
  const newest = page.items.length ? page.items[0].created_at : null;
  const oldest = page.next_cursor && page.items.length ? page.items[page.items.length - 1].created_at : "";
  for (const r of store.sorted()) {
    const within = newest !== null && r.created_at <= newest && r.created_at >= oldest;
    if (!listed.has(r.id) && !arrived.has(r.id) && (within || (newest === null && !page.next_cursor))) dropRow(r.id);
  }
  const missed = [];
  for (const item of page.items) {
    const was = store.has(item.id) ? store.get(item.id).status : undefined; // events may have come meanwhile
    const report = store.upsert(item);
    if (resync && report && FINISHED.has(report.status) && report.status !== was
        && (was ? ACTIVE.has(was) : item.created_at > newestKnown)) missed.push(report);
  }
  if (!olderLoaded) nextCursor = page.next_cursor;
  render();
  for (const report of missed.reverse()) outcomeToast(report); // oldest first, as events would have come
}

async function loadOlder() {
  if (!nextCursor) return;
  await busy($("more-button"), async () => {
    try {
      const page = await session.json("GET", `/v1/reports?limit=${PAGE_SIZE}&cursor=${encodeURIComponent(nextCursor)}`);
      for (const item of page.items) store.upsert(item);
      nextCursor = page.next_cursor;
      olderLoaded = true;
      $("list-error").textContent = "";
      render();
    } catch (error) {
      $("list-error").textContent = `Could not load older reports: ${error.message}`;
    }
  });
  if ($("more-button").hidden) $("list-title").focus();
}

async function fetchReport(id) {
  try {
    const report = store.upsert(await session.json("GET", `/v1/reports/${encodeURIComponent(id)}`));
    if (report) {
      render();
      for (const el of $("toasts").querySelectorAll(`.toast[data-report-id="${id}"] .toast-text`)) {
        if (el.dataset.describes) el.textContent = toastText(report);
      }
    }
  } catch (error) {
    if (error.status === 404) dropRow(id); // deleted meanwhile
  }
}

function render() {
  const tbody = $("reports").tBodies[0];
  const sorted = store.sorted();
  let previous = null;
  for (const report of sorted) {
    let tr = rows.get(report.id);
    if (!tr) {
      tr = h("tr", { id: `report-${report.id}`, tabindex: "-1", dataset: { reportId: report.id } });
      rows.set(report.id, tr);
    }
    updateRow(tr, report);
    const want = previous ? previous.nextSibling : tbody.firstChild;
    if (want !== tr) tbody.insertBefore(tr, want);
    previous = tr;
  }
  $("list-empty").hidden = sorted.length > 0;
  $("reports").hidden = sorted.length === 0;
  $("more-button").hidden = !nextCursor;
}

function dropRow(id) {
  store.remove(id);
  const tr = rows.get(id);
  rows.delete(id);
  if (!tr) return;
  if (tr.contains(document.activeElement)) { // keep keyboard users in the list, not at the top of the page
    const next = tr.nextElementSibling || tr.previousElementSibling;
    (next ? next.querySelector("button") || next : $("list-title")).focus();
  }
  tr.remove();
  render();
}

const STATUS_TEXT = { queued: "Queued", running: "Running", succeeded: "Ready", failed: "Failed",
                      cancelled: "Cancelled", expired: "Expired" };
const LABELS = ["Report", "Status", "Progress", "Rows", "Size", "Created", "Finished", "Actions"];

function updateRow(tr, r) {
  if (tr.cells.length === 0) { // each cell holds one box, which the narrow layout puts beside the cell's label
    LABELS.forEach((label) => tr.append(h("td", { dataset: { label } }, h("div", { class: "v" }))));
    box(tr, 0).append(h("span", { class: "r-name" }), h("span", { class: "r-detail" }), h("span", { class: "r-error" }));
    box(tr, 1).append(h("span", { class: "badge" }));
  }
  const percent = Math.floor(Math.min(1, Math.max(0, r.progress || 0)) * 100);
  tr.dataset.status = r.status;
  tr.dataset.progress = String(r.status === "succeeded" ? 100 : percent);
  tr.dataset.type = r.type || "";

  const what = box(tr, 0);
  what.querySelector(".r-name").textContent = TYPE_NAMES[r.type] || r.type || "Report";
  what.querySelector(".r-detail").textContent = [describe(r).split(" · ").slice(1).join(" · "),
                                                  `#${r.id.slice(0, 8)}`].filter(Boolean).join(" · ");
  what.querySelector(".r-error").textContent = r.status === "failed" && r.error ? r.error : "";

  const badge = box(tr, 1).querySelector(".badge");
  badge.className = `badge badge-${r.status}`;
  badge.textContent = STATUS_TEXT[r.status] || r.status;

  renderProgress(box(tr, 2), r, percent);

  const planned = r.params && r.params.rows;
  if (r.rows !== null && r.rows !== undefined) box(tr, 3).textContent = formatCount(r.rows);
  else if (ACTIVE.has(r.status) && planned) {
    box(tr, 3).replaceChildren(formatCount(planned), h("span", { class: "r-detail" }, "planned"));
  } else box(tr, 3).textContent = "";
  box(tr, 4).textContent = formatBytes(r.size_bytes);
  setTime(box(tr, 5), r.created_at);
  setTime(box(tr, 6), r.finished_at,
          r.expires_at && r.status !== "expired" ? `kept until ${formatDateTime(r.expires_at)}` : "");
  renderActions(box(tr, 7), r);
  for (const td of tr.cells) td.classList.toggle("blank", !td.firstChild.textContent && !td.firstChild.firstChild);
}

const box = (tr, i) => tr.cells[i].firstChild;

function renderProgress(cell, r, percent) {
  const key = ACTIVE.has(r.status) ? "active" : r.status;
  if (cell.dataset.key !== key) {
    cell.dataset.key = key;
    cell.replaceChildren();
    if (ACTIVE.has(r.status)) {
      cell.append(h("progress", { max: "100", value: "0", "aria-label": `Progress of report ${r.id.slice(0, 8)}` }),
                  h("span", { class: "pct" }), h("span", { class: "eta" }));
    } else {
      cell.append(h("span", { class: "pct" }));
    }
  }
  const bar = cell.querySelector("progress");
  if (bar) bar.value = percent;
  const pct = cell.querySelector(".pct");
  if (r.status === "queued") pct.textContent = formatWaiting(r.queue_position);
  else if (r.status === "running") pct.textContent = formatPercent(r.progress);
  else if (r.status === "succeeded") pct.textContent = "100 %";
  else pct.textContent = "";
  updateEta(cell, r);
}

function updateEta(cell, r) {
  const eta = cell.querySelector(".eta");
  if (eta) eta.textContent = r.status === "running" ? formatTimeLeft(store.secondsLeft(r.id, performance.now())) : "";
}

function setTime(cell, iso, extra = "") {
  const text = formatDateTime(iso);
  cell.replaceChildren(...[text ? h("time", { datetime: iso }, text) : null,
                           extra ? h("span", { class: "r-detail" }, extra) : null].filter(Boolean));
}

function renderActions(cell, r) {
  const kind = r.status === "succeeded" ? "succeeded" : ACTIVE.has(r.status) ? "active"
    : FINISHED.has(r.status) ? "finished" : "none";
  if (cell.dataset.kind === kind) return; // unchanged: keep the buttons (and keyboard focus) as they are
  const hadFocus = cell.contains(document.activeElement);
  cell.dataset.kind = kind;
  const about = () => hiddenText(` report ${r.id.slice(0, 8)}`);
  const buttons = [];
  if (kind === "succeeded") {
    buttons.push(h("button", { type: "button", class: "button small primary download",
                               onclick: (e) => download(r.id, e.currentTarget) }, "Download", about()));
  }
  if (kind === "active") {
    buttons.push(h("button", { type: "button", class: "button small cancel",
                               onclick: (e) => cancel(r.id, e.currentTarget) }, "Cancel", about()));
  }
  if (kind === "succeeded" || kind === "finished") {
    buttons.push(h("button", { type: "button", class: "button small quiet delete", onclick: () => remove(r.id) },
                   "Delete", about()));
  }
  cell.className = "v actions";
  cell.replaceChildren(...buttons);
  if (hadFocus) (buttons[0] || cell.closest("tr")).focus();
}

// --- row actions ------------------------------------------------------------------------------------------

async function download(id, button) {
  const r = store.get(id);
  if (!r) return;
  await busy(button, async () => {
    try {
      // The API redirects to a short-lived link (storage, or a signed local URL); fetch follows it.
      const resp = await session.fetch("GET", `/v1/reports/${encodeURIComponent(id)}/download`);
      if (!resp.ok) throw await problemOf(resp);
      const url = URL.createObjectURL(await resp.blob());
      const a = h("a", { href: url, download: `${r.type}-${r.id}.${fileExtension(r)}`, hidden: true });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60000);
    } catch (error) {
      if (error.status === 410 || error.code === "gone") {
        toast({ kind: "error", title: "This report has expired", text: "Its file has been deleted.", reportId: id });
        fetchReport(id);
      } else {
        toast({ kind: "error", title: "The download failed", text: error.message, reportId: id });
      }
    }
  });
}

async function cancel(id, button) {
  await busy(button, async () => {
    try {
      await session.json("DELETE", `/v1/reports/${encodeURIComponent(id)}`);
      announce("Cancelling the report.");
      // report.cancelled arrives over the socket; ask too, in case the socket is down.
      setTimeout(() => { const r = store.get(id); if (r && ACTIVE.has(r.status)) fetchReport(id); }, 2000);
    } catch (error) {
      if (error.status === 404) dropRow(id);
      else toast({ kind: "error", title: "Could not cancel the report", text: error.message, reportId: id });
    }
  });
}

async function remove(id) {
  const r = store.get(id);
  if (!r || !(await confirmDelete(r))) return;
  try {
    await session.json("DELETE", `/v1/reports/${encodeURIComponent(id)}`);
    dropRow(id);
    announce("Report deleted.");
  } catch (error) {
    if (error.status === 404) dropRow(id);
    else toast({ kind: "error", title: "Could not delete the report", text: error.message, reportId: id });
  }
}

function confirmDelete(r) {
  const dialog = $("confirm-dialog");
  $("confirm-text").textContent = `${describe(r)}, created ${formatDateTime(r.created_at)}. `
    + "Its file is deleted too; this cannot be undone.";
  const opener = document.activeElement;
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => {
      if (opener && opener.isConnected) opener.focus();
      resolve(dialog.returnValue === "yes");
    }, { once: true });
    dialog.returnValue = "";
    dialog.showModal();
  });
}

// --- starting a report ------------------------------------------------------------------------------------

function onTypeChange() {
  const type = $("report-type").value;
  for (const el of document.querySelectorAll("#report-form [data-type]")) {
    el.hidden = el.dataset.type !== type;
    el.disabled = el.dataset.type !== type;
  }
  for (const el of document.querySelectorAll("#report-form [data-help]")) el.hidden = el.dataset.help !== type;
  $("report-type").setAttribute("aria-describedby",
    `${type === "demo" ? "report-type-help" : ""} report-type-error`.trim());
}

/**
 * A fresh key per submission, so a retried request (after a token refresh) cannot start a second job.
 * getRandomValues, not randomUUID: the page may be served over plain HTTP, where randomUUID is missing.
 */
function idempotencyKey() {
  return Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, "0")).join("");
}

/** What the user typed; a value the browser cannot read as a number goes as typed, for the API to judge. */
function numberField(id) {
  const input = $(id);
  return Number.isFinite(input.valueAsNumber) ? input.valueAsNumber : input.value;
}

async function onCreate(event) {
  event.preventDefault();
  const form = $("report-form");
  clearErrors(form);
  const type = $("report-type").value;
  const params = {};
  if (type === "demo") {
    Object.assign(params, { rows: numberField("rows"), columns: numberField("columns"), seed: numberField("seed") });
    if ($("format").value !== "xlsx") params.format = $("format").value; // the default is not sent
  }
  await busy($("create-button"), async () => {
    try {
      const report = await session.json("POST", "/v1/reports", { type, params },
                                        { "Idempotency-Key": idempotencyKey() });
      if (arrivedDuringLoad) arrivedDuringLoad.add(report.id);
      store.upsert(report);
      render();
      announce(`${TYPE_NAMES[type] || type} started.`);
    } catch (error) {
      showErrors(form, (f) => (f === "type" ? "report-type" : f), error, "form-error");
    }
  });
}

// --- events and toasts ------------------------------------------------------------------------------------

function onEvent(name, payload) {
  if (arrivedDuringLoad) arrivedDuringLoad.add(payload.report_id);
  const applied = store.applyEvent(name, payload, performance.now());
  if (!applied) return;
  if (applied.isNew) fetchReport(payload.report_id); // started elsewhere or while away: details from the API
  render();
  if (name !== "report.progress") outcomeToast(applied.report);
}

/** The toast saying how a report ended, linking to it. */
function outcomeToast(r) {
  const event = `report.${r.status}`;
  if (r.status === "succeeded") {
    toast({ kind: "succeeded", event, reportId: r.id, title: "Report ready", download: true, text: toastText(r),
            describes: true });
  } else if (r.status === "failed") {
    toast({ kind: "failed", event, reportId: r.id, title: "Report failed",
            text: r.error || "The job could not be completed." });
  } else if (r.status === "cancelled") {
    toast({ kind: "cancelled", event, reportId: r.id, title: "Report cancelled", text: toastText(r), describes: true });
  }
}

/** What a report is (and, once ready, its size), for its toast; redone when its details arrive. */
function toastText(r) {
  const facts = [r.type ? describe(r) : `Report #${r.id.slice(0, 8)}`];
  if (r.status === "succeeded") {
    if (r.rows !== undefined && r.rows !== null) facts.push(`${formatCount(r.rows)} rows`);
    facts.push(formatBytes(r.size_bytes));
  }
  return facts.filter(Boolean).join(" · ");
}

/** A toast: kind succeeded|failed|cancelled|error|info; with reportId it links to the report's row. */
function toast({ kind, event, reportId, title, text, download: withDownload = false, describes = false }) {
  const box = $("toasts");
  const el = h("div", { class: `toast toast-${kind}`, dataset: { event, reportId } },
    h("p", { class: "toast-title" }, title),
    text ? h("p", { class: "toast-text", dataset: describes ? { describes: "1" } : {} }, text) : null);
  const actions = h("div", { class: "toast-actions" });
  if (reportId) {
    actions.append(h("a", { href: `#report-${reportId}`, class: "toast-link",
                            onclick: (e) => { e.preventDefault(); goToRow(reportId); } },
                     "Show report", hiddenText(` ${reportId.slice(0, 8)}`)));
  }
  if (withDownload) {
    actions.append(h("button", { type: "button", class: "button small primary download",
                                 onclick: (e) => download(reportId, e.currentTarget) }, "Download",
                     hiddenText(` report ${reportId.slice(0, 8)}`)));
  }
  if (actions.childElementCount) el.append(actions);
  el.append(h("button", { type: "button", class: "toast-close", "aria-label": "Dismiss notification",
                          onclick: () => dismiss(el) }, "×"));
  box.append(el);
  while (box.childElementCount > MAX_TOASTS) box.firstElementChild.remove();
  if (kind !== "failed" && kind !== "error") {
    const leave = () => { if (!el.matches(":hover, :focus-within")) dismiss(el); else setTimeout(leave, 3000); };
    setTimeout(leave, TOAST_MS);
  }
}

function dismiss(el) {
  if (el.contains(document.activeElement)) $("main").focus();
  el.remove();
}

function goToRow(id) {
  const tr = rows.get(id);
  if (!tr) return;
  tr.scrollIntoView({ block: "center", behavior: "smooth" });
  tr.focus({ preventScroll: true });
  tr.classList.remove("flash");
  void tr.offsetWidth; // restart the highlight
  tr.classList.add("flash");
}

/** A message for screen readers only (what sighted users see happen in the list). */
function announce(text) {
  const el = $("announcer");
  el.textContent = "";
  setTimeout(() => { el.textContent = text; }, 50);
}

// --- wiring -----------------------------------------------------------------------------------------------

function main() {
  $("signin-form").addEventListener("submit", onSignIn);
  $("signup-form").addEventListener("submit", onSignUp);
  $("report-form").addEventListener("submit", onCreate);
  $("report-type").addEventListener("change", onTypeChange);
  $("signout-button").addEventListener("click", () => session.signOut());
  $("more-button").addEventListener("click", loadOlder);
  $("show-signup").addEventListener("click", (e) => { e.preventDefault(); show("signup"); });
  $("show-signin").addEventListener("click", (e) => { e.preventDefault(); show("signin"); });
  setInterval(() => { // the time left moves on between progress events
    for (const [id, tr] of rows) if (tr.dataset.status === "running") updateEta(box(tr, 2), store.get(id));
  }, 1000);
  setInterval(() => { // a queued report's place moves as other users' jobs start and finish: no event says so
    if (document.hidden) return;
    for (const [id, tr] of rows) if (tr.dataset.status === "queued") fetchReport(id);
  }, QUEUE_REFRESH_MS);
  onTypeChange();
  initSignIn();
  show(location.hash === "#signup" ? "signup" : "signin", { focus: false });
}

main();
