"""The demo report as CSV (`params.format: csv`): the header and the sales rows, nothing else, read back by csv."""
from __future__ import annotations

import csv
import datetime as dt

import pytest

from reportflow_common import contracts as c
from reportflow_worker.builders import CHUNK_ROWS, build_report, report_output
from reportflow_worker.builders.demo import build_demo_csv, demo_columns, demo_rows

PARSE = {"date": dt.date.fromisoformat, "text": str, "int": int, "float": float}


def _read(path, columns: int) -> tuple[bytes, list[str], list[list]]:
    raw = path.read_bytes()
    with open(path, newline="", encoding="utf-8") as f:
        header, *rows = list(csv.reader(f))
    kinds = [kind for _name, kind in demo_columns(columns)]
    return raw, header, [[PARSE[k](v) for k, v in zip(kinds, row, strict=True)] for row in rows]


@pytest.mark.parametrize(("rows", "columns", "seed"), [(2500, 10, 5), (1, 1, 0), (30, 50, -4)])
def test_csv_holds_the_header_and_exactly_the_rows(tmp_path, rows, columns, seed):
    path = tmp_path / "demo.csv"
    assert build_demo_csv(str(path), {"rows": rows, "columns": columns, "seed": seed}, lambda d, t: None) == rows
    raw, header, data = _read(path, columns)
    assert header == [name for name, _kind in demo_columns(columns)]
    assert data == list(demo_rows(rows, columns, seed))  # no totals row: a program would read it as a sale
    assert raw.count(b"\r\n") == rows + 1 and raw.endswith(b"\r\n")


def test_csv_cells_are_plain_iso_dates_and_shortest_numbers(tmp_path):
    path = tmp_path / "demo.csv"
    build_demo_csv(str(path), {"rows": 3, "columns": 8, "seed": 12345}, lambda d, t: None)
    first = path.read_bytes().decode().split("\r\n")[1].split(",")
    row = next(iter(demo_rows(3, 8, 12345)))
    assert first == [row[0].isoformat(), row[1], row[2], str(row[3]), *(repr(v) for v in row[4:])]


def test_the_same_params_give_the_same_bytes(tmp_path):
    params = {"rows": 1500, "columns": 9, "seed": 8}
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    build_demo_csv(str(a), params, lambda d, t: None)
    build_demo_csv(str(b), params, lambda d, t: None)
    assert a.read_bytes() == b.read_bytes()


def test_csv_progress_and_cancel(tmp_path):
    calls = []
    build_demo_csv(str(tmp_path / "ok.csv"), {"rows": 2 * CHUNK_ROWS + 1, "columns": 2, "seed": 0},
                   lambda done, total: calls.append((done, total)))
    assert calls == [(CHUNK_ROWS, 2001), (2 * CHUNK_ROWS, 2001), (2001, 2001)]

    def cancel(done, total):
        raise KeyboardInterrupt  # anything the callback raises stops the build

    path = tmp_path / "cancelled.csv"
    with pytest.raises(KeyboardInterrupt):
        build_demo_csv(str(path), {"rows": 5 * CHUNK_ROWS, "columns": 2, "seed": 0}, cancel)
    assert not path.exists()


@pytest.mark.parametrize(("report_type", "params", "extension", "content_type"), [
    ("demo", {"rows": 1, "columns": 1, "seed": 0, "format": "csv"}, ".csv", "text/csv; charset=utf-8"),
    ("demo", {"rows": 1, "columns": 1, "seed": 0, "format": "xlsx"}, ".xlsx", c.FILE_CONTENT_TYPES[".xlsx"]),
    ("demo", {"rows": 1, "columns": 1, "seed": 0}, ".xlsx", c.FILE_CONTENT_TYPES[".xlsx"]),  # stored before format
    ("activity", {}, ".xlsx", c.FILE_CONTENT_TYPES[".xlsx"]),
])
def test_report_output_follows_the_format(report_type, params, extension, content_type):
    output = report_output(report_type, params)
    assert (output.extension, output.content_type) == (extension, content_type)
    assert c.content_type_of(f"reports/u/r{extension}") == content_type
    assert c.extension_of(f"reports/u/r{extension}") == extension


def test_build_report_writes_the_format_asked_for(tmp_path):
    params = {"rows": 20, "columns": 4, "seed": 1, "format": "csv"}
    path = tmp_path / ("report" + report_output("demo", params).extension)
    rows = build_report("demo", params, str(path), lambda d, t: None, sessions=None, user_id=None,
                        xlsx_engine="lean")
    assert rows == 20 and path.read_bytes().startswith(b"date,region,product,units\r\n")
    with pytest.raises(ValueError, match="unknown report type"):
        build_report("nope", {}, str(path), lambda d, t: None, sessions=None, user_id=None, xlsx_engine="lean")
