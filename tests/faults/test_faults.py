"""No single infrastructure fault loses or strands a report, or loses, repeats or reorders an event.

Each scenario: two new users, each with a Socket.IO client that reconnects to any notifier with its
(epoch, last_seq), submit reports (retrying through outages with the same Idempotency-Key) while one fault is
injected for real and then cleared. Then, from the database, the bucket and the clients: every report is
terminal; every `succeeded` row has its object, and no report has any other object; every client saw its
events in sequence on every connection, none twice, and knows each report's final state (from its event,
or from the HTTP reload an `events.reset` asks for); no HTTP answer was a 5xx other than a problem+json 503.
A table of figures per scenario is printed at the end of the run.
"""
from __future__ import annotations

import signal
import threading
import time
from dataclasses import dataclass

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from reportflow_common.contracts import ACTIVE_STATUSES, FAILED, SUCCEEDED
from support.waiting import GiveUp, wait_until

from .conftest import RESULTS, FaultStack
from .workload import FollowingClient, Http, Person, new_person

REPORTS_PER_USER = 5
TERMINAL_DEADLINE = 240  # generous: a loaded 2-core machine


# What each recovery mechanism did, read from the services' /metrics (sums over live processes; the counts of a
# process that died during the scenario are lost with it, so these are lower bounds).
MECHANISMS = {
    "taken back": ("worker", "reportflow_worker_reconciler_requeued_total", {"reason": "lease_expired"}),
    "rung again": ("worker", "reportflow_worker_reconciler_requeued_total", {"reason": "doorbell_missing"}),
    "republished": ("worker", "reportflow_worker_reconciler_events_published_total", {}),
    "catch-ups": ("notifier", "reportflow_notifier_catch_ups_total", {}),
}


def mechanism_counts(stack: FaultStack) -> dict[tuple, float]:
    """{(column, process pid): value} of every MECHANISMS counter, from the live processes."""
    counts = {}
    for process in [stack.worker, *stack.notifiers]:
        if not process.alive():
            continue
        try:
            text = requests.get(process.url + "/metrics", timeout=5).text
        except requests.RequestException:
            continue
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                for column, (kind, name, labels) in MECHANISMS.items():
                    if process.name.startswith(kind) and sample.name == name and \
                            all(sample.labels.get(k) == v for k, v in labels.items()):
                        key = (column, process.proc.pid)
                        counts[key] = counts.get(key, 0) + sample.value
    return counts


@dataclass
class Run:
    """One scenario's workload, running while its fault is injected."""
    stack: FaultStack
    name: str
    http: Http
    people: list[Person]
    clients: list[FollowingClient]
    submitted: dict[str, list[str]]  # person id -> report ids
    submitters: list[threading.Thread]
    per_user: int
    errors: list[str]
    counts_before: dict

    def report_ids(self) -> list[str]:
        return [rid for ids in self.submitted.values() for rid in ids]


def start_run(stack: FaultStack, name: str, per_user: int = REPORTS_PER_USER, rows=(40_000, 160_000),
              pause: float = 0.5, clients_on: int | None = None) -> Run:
    http, before = Http(stack), mechanism_counts(stack)
    people = [new_person(http) for _ in range(2)]
    clients = [FollowingClient(p, stack.notifier_urls, first=i if clients_on is None else clients_on).start()
               for i, p in enumerate(people)]
    submitted: dict[str, list[str]] = {p.id: [] for p in people}
    errors: list[str] = []

    slug = "".join(ch if ch.isalnum() else "-" for ch in name)

    def submit(person: Person, offset: int) -> None:
        deadline = time.monotonic() + 180
        for i in range(per_user):
            size = rows[0] + (rows[1] - rows[0]) * ((i + offset) % per_user) // max(per_user - 1, 1)
            try:
                report_id = person.submit(f"{slug}-{person.id}-{i}", {"rows": size, "columns": 8, "seed": i},
                                          deadline)
            except BaseException as exc:
                errors.append(f"{person.email}: {exc}")
                raise
            submitted[person.id].append(report_id)
            threading.Event().wait(pause)  # a person's pace, not synchronisation

    submitters = [threading.Thread(target=submit, args=(p, i), daemon=True) for i, p in enumerate(people)]
    for thread in submitters:
        thread.start()
    return Run(stack, name, http, people, clients, submitted, submitters, per_user, errors, before)


def running_job(run: Run, timeout: float = 90, besides: frozenset = frozenset()) -> set:
    """Wait until some attempt is running, has made progress and renewed its lease within the last second
    (so the fault hits live work, not the row of an attempt already dead); returns the live attempts' tokens.
    `besides`: attempts already hit, which do not count."""
    def in_flight():
        if run.errors:
            raise GiveUp(run.errors)
        live = {str(token) for (token,) in run.stack.query(
            "SELECT attempt_token FROM reports WHERE status = 'running' AND progress > 0 "
            "AND lease_expires_at > now() + interval '4 seconds'")}
        return live - besides
    return wait_until(in_flight, timeout, "a job in flight")


def hold(seconds: float) -> None:
    """Keep a fault in place this long (the fault's duration, not a wait for anything)."""
    threading.Event().wait(seconds)


def finish(run: Run, restored_at: float, resets_expected: bool = False) -> dict:
    """Wait for the end, check everything the module docstring promises, record the figures."""
    for thread in run.submitters:
        thread.join(200)
    assert not run.errors, run.errors
    assert all(len(ids) >= run.per_user for ids in run.submitted.values()), "every submission was accepted"
    ids = run.report_ids()
    stack = run.stack

    def statuses() -> dict[str, str]:
        return {str(rid): status for rid, status in stack.query(
            "SELECT id, status FROM reports WHERE id = ANY(%s::uuid[])", (ids,))}

    final = wait_until(lambda: (s := statuses()) and all(v not in ACTIVE_STATUSES for v in s.values()) and s,
                       TERMINAL_DEADLINE, "every report to be terminal")
    done_at = time.monotonic()
    for person, client in zip(run.people, run.clients, strict=True):
        expected = {rid: final[rid] for rid in run.submitted[person.id]}
        wait_until(lambda c=client, e=expected: c.knows(e), 90, f"{person.email}'s client to know every outcome")
    for client in run.clients:
        client.stop()

    rows = stack.query("SELECT id, user_id, status, storage_key, size_bytes, attempts, error FROM reports "
                       "WHERE id = ANY(%s::uuid[])", (ids,))
    for rid, user_id, status, key, size, _attempts, error in rows:
        objects = stack.bucket_keys(f"reports/{user_id}/{rid}.")
        if status == SUCCEEDED:
            assert objects == {key: size}, f"{rid}: succeeded with objects {objects}, row says {key} ({size} B)"
        else:
            assert objects == {}, f"{rid} is {status} ({error}) but left {objects}"
    for client in run.clients:
        assert client.problems == [], f"{client.person.email}: {client.problems}"
        repeated = {k: n for k, n in client.terminal_events.items() if n > 1}
        assert not repeated, f"terminal events received more than once: {repeated}"
        if not resets_expected:
            assert client.resets == 0
            assert sorted(rid for _epoch, rid in client.terminal_events) == sorted(run.submitted[client.person.id])
    assert run.http.bad == [], run.http.bad

    counts = {status: sum(1 for r in rows if r[2] == status) for status in (SUCCEEDED, FAILED)}
    after = mechanism_counts(stack)
    moved = {column: int(sum(v - run.counts_before.get(k, 0) for k, v in after.items() if k[0] == column))
             for column in MECHANISMS}
    result = {"scenario": run.name, "submitted": len(ids), "succeeded": counts[SUCCEEDED], "failed": counts[FAILED],
              "extra attempts": sum(r[5] - 1 for r in rows if r[5] > 1), **moved,
              "events missed/repeated": sum(len(c.problems) for c in run.clients),
              "reconnects": sum(len(c.connections) - 1 for c in run.clients),
              "resets": sum(c.resets for c in run.clients), "503s": run.http.statuses[503],
              "recovered after": f"{max(0.0, done_at - restored_at):.1f} s"}
    RESULTS.append(result)
    print(result)  # the figures, also in the summary table at the end
    return result


def restart(process) -> None:
    """Start a stopped service again on its port (clients keep their addresses)."""
    process.start(timeout=60)


# The scenarios

def test_worker_pool_processes_sigkilled_five_times(stack):
    run = start_run(stack, "pool process SIGKILL x5")
    restored_at, hit = time.monotonic(), frozenset()
    for _ in range(5):
        hit |= running_job(run, besides=hit)
        victims = stack.worker.pool_processes()
        for child in victims:  # as an OOM kill would: no exit hook runs
            child.send_signal(signal.SIGKILL)
        restored_at = time.monotonic()
        wait_until(lambda v=victims: len([p for p in stack.worker.pool_processes() if p not in v]) == 2, 60,
                   "Celery to replace its pool processes")
    result = finish(run, restored_at)
    assert result["succeeded"] == result["submitted"] and result["extra attempts"] >= 5


def test_whole_worker_sigkilled_and_restarted(stack):
    run = start_run(stack, "whole worker SIGKILL, restarted")
    running_job(run)
    stack.worker.signal_group(signal.SIGKILL)
    stack.worker.proc.wait(10)
    restored_at = time.monotonic()
    restart(stack.worker)
    result = finish(run, restored_at)
    assert result["succeeded"] == result["submitted"] and result["extra attempts"] >= 1


def test_redis_restarted_with_its_data(stack):
    run = start_run(stack, "Redis restarted, AOF kept (down 5 s)")
    running_job(run)
    stack.redis.stop()
    hold(5)
    stack.redis.start()
    restored_at = time.monotonic()
    result = finish(run, restored_at)
    assert result["succeeded"] == result["submitted"]


def test_redis_restarted_without_its_data(stack):
    """The queue, the event logs and their numbering are gone: jobs are rung for again from PostgreSQL, and
    clients are told (events.reset) to reload instead of having new events dropped as old seqs."""
    run = start_run(stack, "Redis restarted, data lost", pause=0.1)
    running_job(run)
    wait_until(lambda: stack.query("SELECT count(*) FROM reports WHERE status = 'queued'")[0][0] >= 4, 60,
               "jobs waiting in the queue, whose messages the loss takes")
    stack.redis.kill()
    stack.redis.start(lose_data=True)
    restored_at = time.monotonic()
    result = finish(run, restored_at, resets_expected=True)
    # how many of the lost wake-ups the reconciler rings for again depends on timing (a process freed after
    # the restart claims the next queued job from PostgreSQL without one): 5, 4 and 3 in three CI runs
    assert result["succeeded"] == result["submitted"] and result["resets"] >= 2 and result["rung again"] >= 1


def test_postgres_down_for_20_seconds(stack):
    run = start_run(stack, "PostgreSQL down 20 s", pause=1.5)
    running_job(run)
    stack.postgres.stop()
    hold(20)
    stack.postgres.start()
    restored_at = time.monotonic()
    result = finish(run, restored_at)
    assert result["succeeded"] == result["submitted"]


def test_s3_unreachable_for_20_seconds(stack):
    run = start_run(stack, "S3 unreachable 20 s")
    running_job(run)
    stack.s3_gate.refuse()
    hold(20)
    stack.s3_gate.open()
    restored_at = time.monotonic()
    result = finish(run, restored_at)
    assert result["succeeded"] == result["submitted"]


def test_a_notifier_killed_and_clients_fail_over(stack):
    run = start_run(stack, "a notifier killed, clients fail over", clients_on=0)
    running_job(run)
    doomed = stack.notifiers[0]
    doomed.signal_group(signal.SIGKILL)
    doomed.proc.wait(10)
    restored_at = time.monotonic()
    wait_until(lambda: all(len(c.connections) >= 2 for c in run.clients), 60, "the clients to fail over")
    result = finish(run, restored_at)
    restart(doomed)
    assert result["succeeded"] == result["submitted"]
    assert all(c.connections[-1].url == stack.notifiers[1].url for c in run.clients)


def test_commit_then_no_message_and_a_crash_between_commit_and_enqueue(stack):
    """The reports service commits a job, then cannot reach the broker (answers 202 all the same), or dies
    before it sends the message. The client's retry with its Idempotency-Key gets the same report, never a
    failed one; the reconciler rings for the jobs, which all succeed."""
    run = start_run(stack, "commit, then enqueue fails / crash")
    person = run.people[0]
    stack.broker_gate.refuse()  # the reports service's broker connection only; workers still reach it
    try:
        unsent = [person.submit(f"unsent-{i}", {"rows": 2_000, "columns": 3, "seed": i}, time.monotonic() + 60)
                  for i in range(2)]
    finally:
        stack.broker_gate.open()
    stack.broker_gate.blackhole()  # the next message never leaves: the process is killed while it waits
    answer: dict = {}
    key = f"crash-{person.id}"
    post = threading.Thread(target=lambda: answer.update(
        r=person.http.call("POST", f"{stack.reports_url}/v1/reports", timeout=120,
                           headers={**person.headers(), "Idempotency-Key": key},
                           json={"type": "demo", "params": {"rows": 3_000, "columns": 3, "seed": 9}})), daemon=True)
    post.start()
    try:
        wait_until(lambda: stack.query("SELECT id FROM reports WHERE idempotency_key = %s", (key,)), 60,
                   "the row to be committed before the message")
        stack.reports.signal_group(signal.SIGKILL)
        stack.reports.proc.wait(10)
        restored_at = time.monotonic()  # from the crash on
        post.join(30)
        assert answer["r"] is None, "the request died with its process"
    finally:
        stack.broker_gate.open()
    restart(stack.reports)
    crashed = person.submit(key, {"rows": 3_000, "columns": 3, "seed": 9}, time.monotonic() + 60)
    (committed,) = stack.query("SELECT id FROM reports WHERE idempotency_key = %s", (key,))
    assert crashed == str(committed[0]), "the retry answers with the committed report"
    for thread in run.submitters:
        thread.join(200)
    run.submitted[person.id] += [*unsent, crashed]
    result = finish(run, restored_at)
    assert result["succeeded"] == result["submitted"]


def test_sigterm_finishes_or_hands_back_within_the_grace_period(stack):
    """SIGTERM to the worker's main process (what the kubelet sends): jobs that can finish in the grace
    period do; a long one is handed back at once, not counted as an attempt, and finished by the next worker.
    The worker exits by itself within its grace period (4 s here, so that an 800k-row job cannot fit)."""
    stack.worker.stop()
    stack.worker = stack.worker_process("worker-short-grace", GRACEFUL_TIMEOUT_SECONDS="4").start(timeout=60)
    run = start_run(stack, "worker SIGTERM mid-job")
    person = run.people[1]
    long_one = person.submit(f"long-{person.id}", {"rows": 800_000, "columns": 8, "seed": 5}, time.monotonic() + 60)
    wait_until(lambda: stack.query("SELECT 1 FROM reports WHERE id = %s AND status = 'running' AND progress > 0",
                                   (long_one,)), 120, "the long job to run")
    stack.worker.proc.send_signal(signal.SIGTERM)
    exit_code = stack.worker.proc.wait(4 + 10)  # the chart's padding after the grace period, then SIGKILL
    restored_at = time.monotonic()
    assert exit_code == 0, stack.worker.tail()
    (status, attempts), = stack.query("SELECT status, attempts FROM reports WHERE id = %s", (long_one,))
    assert (status, attempts) == ("queued", 0), "handed back, not left running for its lease to run out"
    stack.worker = stack.worker_process().start(timeout=60)
    for thread in run.submitters:
        thread.join(200)
    run.submitted[person.id].append(long_one)
    result = finish(run, restored_at)
    assert result["succeeded"] == result["submitted"]


@pytest.fixture(autouse=True)
def healthy_afterwards(stack):
    """Each scenario starts from a healthy system, whatever the one before left."""
    yield
    stack.s3_gate.open()
    stack.broker_gate.open()
    if not stack.redis.process.alive():
        stack.redis.start()
    try:
        stack.query("SELECT 1")
    except Exception:
        stack.postgres.start()
    for process in stack.processes():
        if not process.alive():
            restart(process)
