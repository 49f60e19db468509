// The page's report model (static/js/model.js) without a browser: `node --test tests/unit/js/`
// (tests/unit/test_page_js.py runs it as part of the unit tests).
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  ProgressRate, ReportStore, describe, fieldErrors, fileExtension, formatBytes, formatDateTime, formatPercent,
  formatTimeLeft, formatWaiting,
} from "../../../services/notifier/reportflow_notifier/static/js/model.js";

const T0 = Date.parse("2026-01-05T10:00:00Z");
const at = (ms) => new Date(T0 + ms).toISOString();
const report = (over = {}) => ({ id: "r1", type: "demo", params: { rows: 100, columns: 8, seed: 1 }, status: "queued",
                                 progress: 0, created_at: "2026-01-05T09:59:59+00:00", ...over });

test("the time left follows the progress rate measured on the events' own clock", () => {
  const rate = new ProgressRate();
  rate.add(T0, 0.1);
  assert.equal(rate.secondsLeft(), null, "one sample says nothing about a rate");
  rate.add(T0 + 1000, 0.2);
  rate.add(T0 + 2000, 0.3);
  assert.ok(Math.abs(rate.secondsLeft() - 7) < 1e-9); // 0.1 per second, 0.7 to go
});

test("a rate needs samples spread over some time, and progress that moves", () => {
  const rate = new ProgressRate();
  rate.add(T0, 0.1);
  rate.add(T0 + 100, 0.2);
  assert.equal(rate.secondsLeft(), null);
  const still = new ProgressRate();
  still.add(T0, 0.4);
  still.add(T0 + 5000, 0.4);
  assert.equal(still.secondsLeft(), null);
});

test("old samples leave the window, so the estimate follows a job that speeds up", () => {
  const rate = new ProgressRate();
  for (let s = 0; s <= 20; s += 1) rate.add(T0 + s * 1000, 0.01 * s); // slow: 1 % a second
  for (let s = 21; s <= 40; s += 1) rate.add(T0 + s * 1000, 0.2 + 0.03 * (s - 20)); // then 3 %
  assert.ok(Math.abs(rate.secondsLeft() - 0.2 / 0.03) < 0.5, rate.secondsLeft());
});

test("a retried job starts its rate again; repeated or late samples are ignored", () => {
  const rate = new ProgressRate();
  rate.add(T0, 0.5);
  rate.add(T0 + 1000, 0.6);
  rate.add(T0 + 1000, 0.7); // same instant
  rate.add(T0 + 500, 0.9); // earlier
  assert.ok(Math.abs(rate.secondsLeft() - 4) < 1e-9);
  rate.add(T0 + 2000, 0.05); // the worker died and another began from the start
  assert.equal(rate.secondsLeft(), null);
  assert.deepEqual(rate.samples, [{ at: T0 + 2000, progress: 0.05 }]);
});

test("the store's estimate counts down on the page's clock between events", () => {
  const store = new ReportStore();
  store.upsert(report({ status: "running" }));
  store.applyEvent("report.progress", { seq: 1, report_id: "r1", progress: 0.2, time: at(0) }, 50_000);
  store.applyEvent("report.progress", { seq: 2, report_id: "r1", progress: 0.4, time: at(2000) }, 52_000);
  assert.equal(store.secondsLeft("r1", 52_000), 6);
  assert.equal(store.secondsLeft("r1", 55_000), 3);
  assert.equal(store.secondsLeft("r1", 99_000), 0);
  store.applyEvent("report.succeeded", { seq: 3, report_id: "r1", rows: 100, size_bytes: 9, time: at(3000) }, 53_000);
  assert.equal(store.secondsLeft("r1", 53_000), null);
});

test("a report never moves backwards, whichever of the API and the socket speaks last", () => {
  const store = new ReportStore();
  store.upsert(report());
  store.applyEvent("report.succeeded", { seq: 5, report_id: "r1", rows: 100, size_bytes: 2048,
                                         download_url: "/v1/reports/r1/download", time: at(0) }, 0);
  const stale = store.upsert(report({ status: "running", progress: 0.5, started_at: at(-500) }));
  assert.equal(stale.status, "succeeded");
  assert.equal(stale.rows, 100);
  assert.equal(stale.started_at, at(-500), "details the events lack are still taken");
  const running = new ReportStore();
  running.upsert(report({ status: "running", progress: 0.1 }));
  running.applyEvent("report.progress", { seq: 1, report_id: "r1", progress: 0.6, time: at(0) }, 0);
  assert.equal(running.upsert(report({ status: "running", progress: 0.3 })).progress, 0.6);
  assert.equal(running.upsert(report({ status: "cancelled", progress: 0.3 })).status, "cancelled");
  running.applyEvent("report.progress", { seq: 2, report_id: "r1", progress: 0.7, time: at(1) }, 1);
  assert.equal(running.get("r1").status, "cancelled", "a late progress event does not revive it");
});

test("an event about an unknown report makes a placeholder and says it is new", () => {
  const store = new ReportStore();
  const { report: r, isNew } = store.applyEvent("report.progress",
    { seq: 1, report_id: "r9", progress: 0.25, time: at(0) }, 0);
  assert.ok(isNew);
  assert.equal(r.status, "running");
  assert.equal(store.applyEvent("report.progress", { seq: 2, report_id: "r9", progress: 0.3, time: at(1) }, 1).isNew,
               false);
});

test("a report deleted on the page stays gone", () => {
  const store = new ReportStore();
  store.upsert(report());
  store.remove("r1");
  assert.equal(store.upsert(report()), null);
  assert.equal(store.applyEvent("report.cancelled", { seq: 1, report_id: "r1", time: at(0) }, 0), null);
  assert.equal(store.sorted().length, 0);
});

test("newest first, as the API pages", () => {
  const store = new ReportStore();
  store.upsert(report({ id: "a", created_at: "2026-01-05T10:00:00+00:00" }));
  store.upsert(report({ id: "b", created_at: "2026-01-05T10:00:02+00:00" }));
  store.upsert(report({ id: "c", created_at: "2026-01-05T10:00:01+00:00" }));
  assert.deepEqual(store.sorted().map((r) => r.id), ["b", "c", "a"]);
});

test("field errors are keyed by the form's field names", () => {
  const errors = fieldErrors({ errors: [{ field: "params.rows", message: "must be an integer" },
                                        { field: "type", message: "must be one of: demo, activity" },
                                        { field: "params.rows", message: "must be between 1 and 1000000" }] });
  assert.deepEqual(errors, { rows: "must be an integer; must be between 1 and 1000000",
                             type: "must be one of: demo, activity" });
  assert.deepEqual(fieldErrors(null), {});
});

test("what the list prints", () => {
  assert.equal(formatBytes(999), "999 B");
  assert.equal(formatBytes(14_523_000), "14.5 MB");
  assert.equal(formatBytes(250_000), "250 kB");
  assert.equal(formatBytes(null), "");
  assert.equal(formatPercent(0.456), "45 %");
  assert.equal(formatPercent(1.2), "100 %");
  assert.equal(formatPercent(0.0047), "0.4 %");
  assert.equal(formatPercent(0), "0.0 %");
  assert.equal(formatTimeLeft(null), "");
  assert.equal(formatTimeLeft(0.4), "finishing…");
  assert.equal(formatTimeLeft(42.4), "about 42 s left");
  assert.equal(formatTimeLeft(150), "about 3 min left");
  assert.equal(describe(report({ params: { rows: 20000, columns: 4, seed: 7, format: "csv" } })),
               "Demo sales sheet · 20,000 × 4 · seed 7 · csv");
  assert.equal(describe({ type: "activity", params: {} }), "My activity");
  assert.equal(fileExtension(report()), "xlsx");
  assert.equal(fileExtension(report({ params: { format: "csv" } })), "csv");
});

test("dates carry the day and the time to the second, and the year only when it is another", () => {
  const now = new Date("2026-06-01T12:00:00Z");
  const same = formatDateTime("2026-01-05T10:00:02+00:00", now);
  assert.match(same, /Jan 5.*\d\d:02/);
  assert.doesNotMatch(same, /2026/);
  assert.match(formatDateTime("2025-12-31T10:00:00+00:00", now), /2025/);
  assert.equal(formatDateTime(null), "");
});

test("a queued report says its place in the queue, when the API gave one", () => {
  assert.equal(formatWaiting(1), "Waiting to start: next in line");
  assert.equal(formatWaiting(4), "Waiting to start: no. 4 in line");
  assert.equal(formatWaiting(null), "Waiting to start");  // taken meanwhile, or an older server
  const store = new ReportStore();
  store.upsert(report({ queue_position: 3 }));
  assert.equal(store.upsert(report({ queue_position: 1 })).queue_position, 1, "a fresher answer moves it");
});
