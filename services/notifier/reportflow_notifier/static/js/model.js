// The page's knowledge of the user's reports, and the formatting of what it shows. No DOM, no network:
// main.js feeds it API objects and socket events and renders what it holds; node --test runs model.test.mjs.

export const EVENTS = ["report.progress", "report.succeeded", "report.failed", "report.cancelled"];
export const ACTIVE = new Set(["queued", "running"]);
export const FINISHED = new Set(["succeeded", "failed", "cancelled", "expired"]);

// How far along a report's life a status is. A report never moves backwards: an API answer read before an
// event arrived must not undo what the event said, whichever of the two the page receives last.
const STAGE = { queued: 0, running: 1, succeeded: 2, failed: 2, cancelled: 2, expired: 3 };
const stage = (status) => STAGE[status] ?? 0;

const ETA_WINDOW_MS = 15000; // progress samples older than this (behind the newest) do not count
const ETA_MIN_SPAN_MS = 400; // and the ones kept must span this much before a rate means anything

/** The progress rate of one running report, from (time, progress) samples; gives a time left. */
export class ProgressRate {
  constructor() { this.samples = []; }

  /** `at` in ms on one clock: the events' own `time` (the server's), so replayed events count too. */
  add(at, progress) {
    const last = this.samples[this.samples.length - 1];
    if (last && (at <= last.at || progress < last.progress)) {
      if (progress < last.progress) this.samples = []; // a retried job starts again from the beginning
      else return;
    }
    this.samples.push({ at, progress });
    while (this.samples.length > 2 && at - this.samples[0].at > ETA_WINDOW_MS) this.samples.shift();
  }

  /** Seconds left after the newest sample, or null while the rate is unknown. */
  secondsLeft() {
    const n = this.samples.length;
    if (n < 2) return null;
    const first = this.samples[0], last = this.samples[n - 1];
    const span = last.at - first.at, gained = last.progress - first.progress;
    if (span < ETA_MIN_SPAN_MS || gained <= 0) return null;
    return ((1 - last.progress) * span) / gained / 1000;
  }
}

/** Every report the page knows, by id; each carries the API's fields plus `eta` bookkeeping. */
export class ReportStore {
  constructor() {
    this.byId = new Map();
    this.removed = new Set(); // deleted here: a late event or list page must not bring them back
    this.rates = new Map();
    this.etaAt = new Map(); // id -> {seconds, receivedAt}: the estimate and when (page clock) it was made
  }

  has(id) { return this.byId.has(id); }
  get(id) { return this.byId.get(id); }

  /** Merge a report object from the API; returns it, or null for a report deleted on this page. */
  upsert(report) {
    if (this.removed.has(report.id)) return null;
    const known = this.byId.get(report.id);
    if (!known) {
      this.byId.set(report.id, { ...report });
      return this.byId.get(report.id);
    }
    if (stage(report.status) >= stage(known.status)) {
      const progress = report.status === known.status ? Math.max(known.progress || 0, report.progress || 0)
        : report.progress;
      Object.assign(known, report, { progress });
    } else {
      // Older news about the status; the details it has that events do not carry are still welcome.
      for (const key of ["type", "params", "created_at", "started_at", "expires_at"]) {
        if (report[key] !== undefined && report[key] !== null) known[key] = report[key];
      }
    }
    if (!ACTIVE.has(known.status)) this.forgetRate(known.id);
    return known;
  }

  /**
   * Apply one socket event; `receivedAt` is the page's clock (ms). Returns {report, isNew} where isNew
   * says the page had not heard of this report (started elsewhere, or while the page was away), or null
   * for a report deleted here.
   */
  applyEvent(name, payload, receivedAt) {
    const id = payload.report_id;
    if (this.removed.has(id)) return null;
    const isNew = !this.byId.has(id);
    const report = this.byId.get(id) || { id, status: "queued", progress: 0, created_at: payload.created_at };
    if (name === "report.progress") {
      if (stage(report.status) <= stage("running")) {
        report.status = "running";
        report.progress = Math.max(report.progress || 0, payload.progress);
        this.sample(id, payload, receivedAt);
      }
    } else if (name === "report.succeeded") {
      Object.assign(report, { status: "succeeded", progress: 1, rows: payload.rows, size_bytes: payload.size_bytes,
                              download_url: payload.download_url, finished_at: payload.time ?? report.finished_at });
      if (payload.created_at) report.created_at = payload.created_at;
    } else if (name === "report.failed") {
      Object.assign(report, { status: "failed", error: payload.error, finished_at: payload.time ?? report.finished_at });
    } else if (name === "report.cancelled") {
      Object.assign(report, { status: "cancelled", finished_at: payload.time ?? report.finished_at });
    }
    if (!ACTIVE.has(report.status)) this.forgetRate(id);
    this.byId.set(id, report);
    return { report, isNew };
  }

  sample(id, payload, receivedAt) {
    const at = Date.parse(payload.time);
    let rate = this.rates.get(id);
    if (!rate) this.rates.set(id, (rate = new ProgressRate()));
    rate.add(Number.isNaN(at) ? receivedAt : at, payload.progress);
    const seconds = rate.secondsLeft();
    if (seconds === null) this.etaAt.delete(id);
    else this.etaAt.set(id, { seconds, receivedAt });
  }

  forgetRate(id) { this.rates.delete(id); this.etaAt.delete(id); }

  /** Seconds left for a running report at page time `now`, or null when unknown. */
  secondsLeft(id, now) {
    const eta = this.etaAt.get(id);
    return eta ? Math.max(0, eta.seconds - (now - eta.receivedAt) / 1000) : null;
  }

  remove(id) {
    this.byId.delete(id);
    this.forgetRate(id);
    this.removed.add(id);
  }

  /** Forget everything (sign-out, or a reload of the list after the socket could not replay). */
  clear() {
    this.byId.clear();
    this.rates.clear();
    this.etaAt.clear();
    this.removed.clear();
  }

  /** Newest first, as the API pages them. */
  sorted() {
    return [...this.byId.values()].sort((a, b) => String(b.created_at || "").localeCompare(String(a.created_at || ""))
      || String(b.id).localeCompare(String(a.id)));
  }
}

// --- formatting -------------------------------------------------------------------------------------------

const number = new Intl.NumberFormat("en-US");

export function formatCount(n) {
  return n === null || n === undefined ? "" : number.format(n);
}

export function formatBytes(n) {
  if (n === null || n === undefined) return "";
  if (n < 1000) return `${n} B`;
  const units = ["kB", "MB", "GB", "TB"];
  let value = n, unit = -1;
  do { value /= 1000; unit += 1; } while (value >= 1000 && unit < units.length - 1);
  return `${value >= 100 ? Math.round(value) : value.toFixed(1)} ${units[unit]}`;
}

/** "45 %"; below 10 % with a tenth ("0.4 %"), so a long job is seen to move from its start. */
export function formatPercent(progress) {
  const percent = Math.min(1, Math.max(0, progress || 0)) * 100;
  return percent < 10 ? `${(Math.floor(percent * 10) / 10).toFixed(1)} %` : `${Math.floor(percent)} %`;
}

/** A queued report's line: its place in the (fair) queue when the API gave one. */
export function formatWaiting(queuePosition) {
  if (!queuePosition) return "Waiting to start";
  return queuePosition === 1 ? "Waiting to start: next in line" : `Waiting to start: no. ${queuePosition} in line`;
}

/** "about 40 s left", "about 3 min left"; coarse on purpose: the rate wobbles. */
export function formatTimeLeft(seconds) {
  if (seconds === null || seconds === undefined) return "";
  if (seconds < 1.5) return "finishing…";
  if (seconds < 60) return `about ${Math.round(seconds)} s left`;
  if (seconds < 3600) return `about ${Math.round(seconds / 60)} min left`;
  return `about ${(seconds / 3600).toFixed(1)} h left`;
}

const TIME = { hour: "numeric", minute: "2-digit", second: "2-digit" };
const thisYear = new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric", ...TIME });
const otherYear = new Intl.DateTimeFormat(undefined, { year: "numeric", month: "short", day: "numeric", ...TIME });

/** Date and time in the reader's locale and time zone; the year only when it is not this one. */
export function formatDateTime(iso, now = new Date()) {
  const t = Date.parse(iso || "");
  if (Number.isNaN(t)) return "";
  const date = new Date(t);
  return (date.getFullYear() === now.getFullYear() ? thisYear : otherYear).format(date);
}

export const TYPE_NAMES = { demo: "Demo sales sheet", activity: "My activity" };

/** One line saying what a report is: "Demo sales sheet · 20,000 × 8 · seed 42 · csv". */
export function describe(report) {
  const name = TYPE_NAMES[report.type] || report.type || "Report";
  const p = report.params || {};
  const parts = [name];
  if (report.type === "demo") {
    if (p.rows !== undefined) parts.push(`${formatCount(p.rows)} × ${p.columns ?? 8}`);
    if (p.seed !== undefined) parts.push(`seed ${p.seed}`);
  }
  if (p.format && p.format !== "xlsx") parts.push(p.format);
  return parts.join(" · ");
}

/** The file extension of a report's download (the API's `format`, xlsx unless told). */
export function fileExtension(report) {
  return (report.params && report.params.format) || "xlsx";
}

/** Problem+json field errors keyed by field (`params.rows` and `rows` both reach the `rows` input). */
export function fieldErrors(problem) {
  const out = {};
  for (const e of (problem && problem.errors) || []) {
    const field = String(e.field || "").replace(/^params\./, "");
    out[field] = out[field] ? `${out[field]}; ${e.message}` : e.message;
  }
  return out;
}
