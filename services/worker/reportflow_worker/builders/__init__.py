"""One module per report type (demo, activity) describes its sheets; one module per file format writes them.

The worker calls `report_output` (what file a report makes) and `build_report` (make it). A builder
returns the number of data rows written. `on_rows(done, total)` may raise to stop the build (the worker
raises JobCancelled from it when a cancel is requested); the partial file is then removed.
"""
from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from reportflow_common import contracts as c
from reportflow_common.settings import XLSX_ENGINES

ProgressCallback = Callable[[int, int], None]
CHUNK_ROWS = 1000


@dataclass(frozen=True)
class ReportOutput:
    """The file a report makes: its extension (also the stored object's) and its content type."""

    format: str
    extension: str
    content_type: str


def report_output(report_type: str, params: dict) -> ReportOutput:
    """xlsx, unless a demo report asks for csv (`params.format`; reports stored before it existed have none)."""
    fmt = params.get("format", c.XLSX) if report_type == "demo" else c.XLSX
    extension = "." + fmt
    return ReportOutput(fmt, extension, c.FILE_CONTENT_TYPES[extension])


def build_report(report_type: str, params: dict, path: str, on_rows: ProgressCallback, *, sessions,
                 user_id: uuid.UUID, xlsx_engine: str) -> int:
    """Build one report into `path` (named with report_output's extension); returns its data rows."""
    from .activity import build_activity_sheet
    from .demo import build_demo_csv, build_demo_sheet

    if report_type == "demo":
        if report_output(report_type, params).format == c.CSV:
            return build_demo_csv(path, params, on_rows)
        return build_demo_sheet(path, params, on_rows, xlsx_engine)
    if report_type == "activity":
        return build_activity_sheet(path, sessions, user_id, on_rows, xlsx_engine)
    raise ValueError(f"unknown report type {report_type!r}")


def xlsx_writer(engine: str) -> Callable[[str, Iterable], None]:
    """The `write_xlsx(path, sheets)` of an engine named by XLSX_ENGINE: `lean` (ours) or `openpyxl`."""
    if engine not in XLSX_ENGINES:
        raise ValueError(f"unknown xlsx engine {engine!r}; expected one of {', '.join(XLSX_ENGINES)}")
    if engine == "openpyxl":
        from .openpyxl_xlsx import write_xlsx
        return write_xlsx
    from .lean_xlsx import write_xlsx
    return write_xlsx


def load_builders(xlsx_engine: str) -> None:
    """Import every builder and the XLSX_ENGINE writer now: the worker calls this before its pool forks, so a
    prefork child does not import (or, without bytecode files, compile) them during its first job."""
    from . import activity, demo  # noqa: F401
    xlsx_writer(xlsx_engine)


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
