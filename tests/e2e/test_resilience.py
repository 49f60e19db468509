"""Jobs survive workers that die, and running jobs can be cancelled."""
from __future__ import annotations

import signal

import requests

from support.clients import SocketClient
from support.stack import start_worker
from support.waiting import wait_until


def _running_with_progress(user, report_id):
    return lambda: (r := user.get(report_id))["status"] == "running" and r["progress"] > 0 and r


def _events(sock, report_id, name):
    return [p for n, p in sock.of_report(report_id) if n == name]


def test_pool_process_killed_mid_job_is_rerun_and_succeeds(api, stack):
    """The pool process dies as an OOM kill would do it: its lease runs out and the job runs again."""
    user = api.new_user()
    sock = SocketClient(stack.notifiers[0].url, user.token).connect()
    try:
        rep = user.create({"rows": 400_000, "columns": 8, "seed": 3})
        wait_until(_running_with_progress(user, rep["id"]), 60, "the job to be running")
        children = stack.worker.pool_processes()
        assert children, "prefork pool processes"
        for child in children:  # the process building the report dies as an OOM kill would do it
            child.send_signal(signal.SIGKILL)
        done = user.wait_status(rep["id"], ("succeeded", "failed"), 180)
        assert done["status"] == "succeeded", done
        assert done["rows"] == 400_000
        sock.wait_event("report.succeeded", rep["id"], 30)
        assert len(_events(sock, rep["id"], "report.succeeded")) == 1
        assert stack.worker.alive()
    finally:
        sock.disconnect()


def test_whole_worker_killed_mid_job_is_taken_back_after_its_lease(api, stack):
    """SIGKILL of every worker process: nothing renews the job's lease any more, so a reconciler takes the
    job back once the lease runs out (JOB_LEASE_SECONDS, 6 s here) and another worker runs it, whatever
    the broker's visibility timeout (left at an hour here); the dead attempt's object is removed."""
    import psycopg2

    infra, user = stack.infra, api.new_user()
    stack.worker.stop()  # only the doomed worker may take the job
    doomed = start_worker(infra, WORKER_CONCURRENCY="1")
    replacement = None
    try:
        rep = user.create({"rows": 400_000, "columns": 8, "seed": 4})
        wait_until(_running_with_progress(user, rep["id"]), 60, "the job to run on the doomed worker")
        doomed.signal_group(signal.SIGKILL)
        doomed.proc.wait(10)
        replacement = start_worker(infra, WORKER_CONCURRENCY="1")
        done = user.wait_status(rep["id"], ("succeeded", "failed"), 180)
        assert done["status"] == "succeeded", done
        assert done["rows"] == 400_000
        with psycopg2.connect(infra.postgres.url) as conn, conn.cursor() as cur:
            cur.execute("SELECT attempts, storage_key, attempt_token, lease_expires_at FROM reports WHERE id = %s",
                        (rep["id"],))
            attempts, key, token, lease = cur.fetchone()
        assert attempts == 2 and token is None and lease is None
        listing = infra.s3.client().list_objects_v2(Bucket=infra.s3.bucket, Prefix=f"reports/{user.me()['id']}/")
        assert [o["Key"] for o in listing.get("Contents", [])] == [key], "only the winning attempt's object"
    finally:
        doomed.stop()
        if replacement:
            replacement.stop()
        stack.worker = start_worker(infra)


def test_cancel_a_running_job(api, stack):
    user = api.new_user()
    sock = SocketClient(stack.notifiers[1].url, user.token).connect()
    try:
        rep = user.create({"rows": 1_000_000, "columns": 20, "seed": 5})
        wait_until(_running_with_progress(user, rep["id"]), 60, "the job to be running")
        r = user.request("DELETE", f"/v1/reports/{rep['id']}")
        assert r.status_code == 204
        sock.wait_event("report.cancelled", rep["id"], 60)
        final = user.get(rep["id"])
        assert final["status"] == "cancelled" and final["finished_at"] and "download_url" not in final
        assert not _events(sock, rep["id"], "report.succeeded")
        assert user.request("GET", f"/v1/reports/{rep['id']}/download").status_code == 409
        listing = stack.infra.s3.client().list_objects_v2(Bucket=stack.infra.s3.bucket,
                                                          Prefix=f"reports/{final['id'][:0]}")
        assert not [o for o in listing.get("Contents", []) if rep["id"] in o["Key"]], "no partial file left"
    finally:
        sock.disconnect()


def test_cancel_a_queued_job_and_delete_a_finished_one(api, stack):
    user = api.new_user()
    sock = SocketClient(stack.notifiers[0].url, user.token).connect()
    stack.worker.signal_group(signal.SIGSTOP)  # nothing runs: the job stays queued (or unread in a socket)
    try:
        rep = user.create({"rows": 10, "columns": 2, "seed": 1})
        assert user.request("DELETE", f"/v1/reports/{rep['id']}").status_code == 204
        sock.wait_event("report.cancelled", rep["id"], 30)
        assert user.get(rep["id"])["status"] == "cancelled"
    finally:
        stack.worker.signal_group(signal.SIGCONT)
    try:
        # the queued delivery reaches the worker later and does nothing
        done = user.create({"rows": 10, "columns": 2, "seed": 2})
        user.wait_status(done["id"], ("succeeded",))
        assert user.get(rep["id"])["status"] == "cancelled"
        prefix = f"reports/{user.me()['id']}/{done['id']}."  # each attempt writes its own object under this
        s3 = stack.infra.s3.client()
        (stored,) = s3.list_objects_v2(Bucket=stack.infra.s3.bucket, Prefix=prefix)["Contents"]
        assert stored["Size"] > 0
        assert user.request("DELETE", f"/v1/reports/{done['id']}").status_code == 204
        assert user.request("GET", f"/v1/reports/{done['id']}").status_code == 404
        assert "Contents" not in s3.list_objects_v2(Bucket=stack.infra.s3.bucket, Prefix=prefix)
    finally:
        sock.disconnect()


def test_a_job_that_cannot_be_stored_fails_and_says_so(api, stack):
    """A storage error that is not an outage (here: the bucket does not exist) fails the job, visibly,
    instead of leaving it `running` for ever."""
    from support.stack import service

    user = api.new_user()
    stack.worker.stop()
    broken = service(stack.infra, "worker-nobucket", "reportflow-worker", S3_BUCKET="no-such-bucket",
                     WORKER_CONCURRENCY="1").start(ready_path="/healthz", timeout=60)
    sock = SocketClient(stack.notifiers[0].url, user.token).connect()
    try:
        assert requests.get(broken.url + "/readyz", timeout=10).status_code == 503  # readiness says why
        rep = user.create({"rows": 100, "columns": 2, "seed": 1})
        failed = sock.wait_event("report.failed", rep["id"], 60)
        assert failed["error"] == "The report could not be built (internal error)."  # no internals leak
        final = user.get(rep["id"])
        assert final["status"] == "failed" and final["error"] == failed["error"] and final["finished_at"]
    finally:
        sock.disconnect()
        broken.stop()
        stack.worker = start_worker(stack.infra)
