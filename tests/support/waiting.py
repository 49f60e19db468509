"""Waiting on conditions with deadlines: the only synchronisation the tests use."""
from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class GiveUp(Exception):
    """Raised by a check when waiting longer cannot help (the process it waits on has died)."""


def wait_until(check: Callable[[], T], timeout: float = 30.0, what: str = "condition", interval: float = 0.05) -> T:
    """Poll `check` until it returns something truthy; fail with `what` at the deadline."""
    deadline, last_error = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except GiveUp:
            raise
        except Exception as exc:  # not there yet
            last_error = exc
        threading.Event().wait(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}" + (f" (last error: {last_error!r})"
                                                                               if last_error else ""))
