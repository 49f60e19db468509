"""The worker's shutdown deadline, shared by the Celery main process and its prefork children.

On SIGTERM Celery's main process stops taking messages and waits for running jobs (warm shutdown). A job
learns of it here: each progress callback asks whether it can still finish before the deadline
(GRACEFUL_TIMEOUT_SECONDS after the signal, less a margin to hand back); if not, it hands itself back to
the queue for another worker at once. The time is kept in anonymous shared memory made before the pool
forks, so the main process (Celery's `worker_shutting_down` signal) and the children (their own SIGTERM,
when the whole process group is signalled) both set it and every child reads it.
"""
from __future__ import annotations

import mmap
import struct
import time

_DOUBLE = struct.Struct("d")


class ShutdownClock:
    def __init__(self, graceful_seconds: float):
        self.graceful = float(graceful_seconds)
        self.margin = min(10.0, max(2.0, self.graceful / 5))  # time to hand back and clean up
        self._shared = mmap.mmap(-1, _DOUBLE.size)  # MAP_SHARED | MAP_ANONYMOUS: inherited across fork

    def request(self, now: float | None = None) -> None:
        """Start the countdown (the first call wins)."""
        if self.requested_at() is None:
            _DOUBLE.pack_into(self._shared, 0, time.time() if now is None else now)

    def requested_at(self) -> float | None:
        value = _DOUBLE.unpack_from(self._shared, 0)[0]
        return value or None

    def deadline(self) -> float | None:
        """When a job still running must be handed back (wall-clock seconds), or None if no shutdown."""
        at = self.requested_at()
        return None if at is None else at + self.graceful - self.margin

    def should_hand_back(self, fraction_done: float, elapsed: float, now: float | None = None) -> bool:
        """Whether a job `fraction_done` through after `elapsed` seconds cannot finish by the deadline
        (the rest is projected from its pace so far, with a fifth more for saving and uploading)."""
        deadline = self.deadline()
        if deadline is None:
            return False
        now = time.time() if now is None else now
        remaining = elapsed * (1 - fraction_done) / max(fraction_done, 0.01) * 1.2
        return now >= deadline or now + remaining > deadline
