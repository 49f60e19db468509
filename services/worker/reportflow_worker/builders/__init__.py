"""One module per report type; each writes an xlsx file and calls `on_rows` as rows are written.

A builder returns the number of data rows written. `on_rows(done, total)` may raise to stop the build
(the worker raises JobCancelled from it when a cancel is requested).
"""
from __future__ import annotations

from typing import Callable

ProgressCallback = Callable[[int, int], None]
CHUNK_ROWS = 1000
