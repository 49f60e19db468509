"""gunicorn's gevent worker (the notifier, `make up`'s web process) with problem+json error answers; a
module of its own because importing it imports gevent, which only those images install."""
from __future__ import annotations

from gunicorn.workers.ggevent import GeventWorker as _GeventWorker

from .gunicorn_workers import ProblemErrors


class GeventWorker(ProblemErrors, _GeventWorker):
    """See `gunicorn_workers.ProblemErrors`."""
