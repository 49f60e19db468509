"""Fair scheduling with the default pool (two processes) and its reserved lane, the services as processes: one
user's large reports never make another user's small one wait behind them."""
from __future__ import annotations

from support.clients import SocketClient
from support.waiting import wait_until

LARGE = {"rows": 600_000, "columns": 8, "seed": 1}  # 4.8M cells, far above LANE_MAX_CELLS: tens of seconds each
SMALL = {"rows": 1000, "columns": 8, "seed": 2}


def test_a_small_report_is_announced_while_another_users_large_ones_still_run(api, stack):
    heavy, light = api.new_user(), api.new_user()
    sock = SocketClient(stack.notifiers[0].url, light.token).connect()
    large = [heavy.create(LARGE)["id"] for _ in range(4)]
    try:
        statuses = lambda: [heavy.get(report_id) for report_id in large]  # noqa: E731
        wait_until(lambda: [r["status"] for r in statuses()].count("running") == 2, 60,
                   "two large reports to fill the pool")
        waiting = [r["queue_position"] for r in statuses() if r["status"] == "queued"]
        assert len(waiting) == 2 and 1 <= waiting[0] < waiting[1], waiting  # they wait, in order, and say so

        small = light.create(SMALL)
        sock.wait_event("report.succeeded", small["id"], 60)
        assert [r["status"] for r in statuses()] == ["running", "running", "queued", "queued"], \
            "the small report was announced before any large one finished, taking no slot of theirs"
    finally:
        for report_id in large:
            heavy.request("DELETE", f"/v1/reports/{report_id}")
        sock.disconnect()
