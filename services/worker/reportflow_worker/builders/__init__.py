"""One module per report type; each writes an xlsx file and calls `on_rows` as rows are written.

A builder returns the number of data rows written. `on_rows(done, total)` may raise to stop the build
(the worker raises JobCancelled from it when a cancel is requested).
"""
from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager

ProgressCallback = Callable[[int, int], None]
CHUNK_ROWS = 1000


@contextmanager
def job_scratch_dir() -> Iterator[str]:
    """A private folder for one job's files, removed afterwards whatever happens.

    openpyxl's write-only mode streams rows into its own temporary file, which it only deletes at
    interpreter exit when a build stops early (every cancelled job). While the job runs, the process's
    default temporary folder is this one, so those files go with it. A prefork child runs one job at a time.
    """
    folder = tempfile.mkdtemp(prefix="reportflow-job-")
    previous, tempfile.tempdir = tempfile.tempdir, folder
    try:
        yield folder
    finally:
        tempfile.tempdir = previous
        shutil.rmtree(folder, ignore_errors=True)
