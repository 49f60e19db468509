"""reportflow_worker.shutdown: the SIGTERM deadline the main process and its forked children share, and
whether a job can still finish before it."""
from __future__ import annotations

import os

from reportflow_worker.shutdown import ShutdownClock


def test_no_shutdown_means_no_deadline():
    clock = ShutdownClock(60)
    assert clock.requested_at() is None and clock.deadline() is None
    assert clock.should_hand_back(0.01, 500) is False


def test_the_deadline_leaves_a_margin_to_hand_back_and_the_first_request_wins():
    clock = ShutdownClock(60)
    clock.request(now=1000.0)
    clock.request(now=1030.0)
    assert clock.requested_at() == 1000.0
    assert clock.deadline() == 1000.0 + 60 - 10  # a fifth of the grace, at most 10 s
    assert ShutdownClock(5).margin == 2  # at least 2 s


def test_a_job_that_will_finish_in_time_keeps_going_one_that_will_not_is_handed_back():
    clock = ShutdownClock(60)
    clock.request(now=1000.0)
    assert clock.should_hand_back(0.9, 90, now=1001.0) is False  # ~12 s left of a 100 s job
    assert clock.should_hand_back(0.5, 90, now=1001.0) is True  # ~108 s left
    assert clock.should_hand_back(0.99, 1, now=1050.0) is True  # the deadline has passed


def test_a_forked_child_sees_the_request_of_its_parent_and_the_parent_that_of_a_child():
    clock = ShutdownClock(30)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: waits for the parent's request, then reports what it sees
        os.close(read)
        while clock.requested_at() is None:
            os.sched_yield()
        os.write(write, repr(clock.requested_at()).encode())
        os._exit(0)
    os.close(write)
    clock.request(now=1234.5)
    assert os.read(read, 64) == b"1234.5"
    os.waitpid(pid, 0)

    other = ShutdownClock(30)
    pid = os.fork()
    if pid == 0:
        other.request(now=99.0)
        os._exit(0)
    os.waitpid(pid, 0)
    assert other.requested_at() == 99.0
