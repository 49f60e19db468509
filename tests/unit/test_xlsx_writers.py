"""The xlsx engines (XLSX_ENGINE) write the same cells; reportflow's own writer is also checked on its edges.

openpyxl reads every file back: it is the reference reader whichever engine wrote the file.
"""
from __future__ import annotations

import datetime as dt
import tracemalloc
import zipfile

import pytest
from openpyxl import load_workbook
from openpyxl.utils.datetime import to_excel

from reportflow_common.settings import XLSX_ENGINES
from reportflow_worker.builders import lean_xlsx, xlsx_writer
from reportflow_worker.builders.demo import build_demo_sheet, demo_sheets
from reportflow_worker.builders.tables import DATETIME_FORMAT, GENERAL, INTEGER_FORMAT, Column, Sheet, column_letter


def _read(path) -> dict[str, list[tuple]]:
    wb = load_workbook(path, read_only=True)
    try:
        return {name: list(wb[name].iter_rows(values_only=True)) for name in wb.sheetnames}
    finally:
        wb.close()


def _typed(sheets: dict[str, list[tuple]]) -> dict:
    """Cell values with their types (3 and 3.0 are not the same cell), without the empty cells a read-only
    reader pads a row with up to the sheet's declared width."""
    def cells(row):
        row = list(row)
        while row and row[-1] is None:
            row.pop()
        return [(type(v).__name__, v) for v in row]
    return {name: [cells(row) for row in rows] for name, rows in sheets.items()}


def _write(engine: str, path, sheets) -> dict:
    xlsx_writer(engine)(str(path), sheets)
    return _typed(_read(path))


@pytest.mark.parametrize(("rows", "columns", "seed"), [(1200, 10, 7), (50, 50, -3), (1, 1, 0), (10, 3, 99)])
def test_every_engine_writes_the_same_demo_cells(tmp_path, rows, columns, seed):
    params = {"rows": rows, "columns": columns, "seed": seed}
    written = {}
    for engine in XLSX_ENGINES:
        path = tmp_path / f"{engine}.xlsx"
        build_demo_sheet(str(path), params, lambda done, total: None, engine)
        written[engine] = _typed(_read(path))
    reference = written[XLSX_ENGINES[0]]
    assert reference["demo"][0][0] == ("str", "date") and len(reference["demo"]) == rows + 2
    for engine, cells in written.items():
        assert cells == reference, engine


def _odd_sheet(rows: list[list]) -> Sheet:
    columns = [Column("text"), Column("when", DATETIME_FORMAT, 20), Column("count", INTEGER_FORMAT),
               Column("ratio"), Column("flag")]
    return Sheet("odd & <sheet>", columns, rows, lambda: [["TOTAL", None, 3, None, None]])


ODD_ROWS = [
    ["a & b < c > d \"q\" 'q'", dt.datetime(2024, 2, 29, 13, 45, 30), 1, 0.1, True],
    ["  leading and trailing  ", dt.datetime(1900, 1, 1, 0, 0), -5, -1e-9, False],
    ["ünïcødé ✓ 中文 🙂", None, 2 ** 53, 1e300, None],
    [None, dt.datetime(1900, 2, 28, 23, 59, 59), None, 12345678.125, True],
    ["line\nbreak\ttab", dt.datetime(1900, 3, 1, 6, 0), 0, 0.0, None],
]


def test_every_engine_writes_the_same_odd_cells(tmp_path):
    written = {engine: _write(engine, tmp_path / f"{engine}.xlsx", [_odd_sheet([list(r) for r in ODD_ROWS])])
               for engine in XLSX_ENGINES}
    reference = written[XLSX_ENGINES[0]]
    rows = reference["odd & <sheet>"]
    assert rows[1][0] == ("str", ODD_ROWS[0][0]) and rows[3][0] == ("str", ODD_ROWS[2][0])
    assert rows[2][0] == ("str", "  leading and trailing  ")
    assert rows[1][4] == ("bool", True) and rows[1][1] == ("datetime", dt.datetime(2024, 2, 29, 13, 45, 30))
    for engine, cells in written.items():
        assert cells == reference, engine


def test_floats_keep_every_digit(tmp_path):
    """repr, not openpyxl's 16 significant digits: 0.1 + 0.2 reads back as itself, not as 0.3."""
    values = [0.1 + 0.2, 1 / 3, 2.0 ** -1074, 1.7976931348623157e308, -0.0, 123.0]
    sheets = _write("lean", tmp_path / "x.xlsx", [Sheet("s", [Column("a")], [[v] for v in values])])
    assert [row[0][1] for row in sheets["s"][1:]] == values


def test_characters_xml_cannot_carry_are_dropped(tmp_path):
    sheets = _write("lean", tmp_path / "x.xlsx", [Sheet("s", [Column("a")], [["bell\x07 and nul\x00 end"]])])
    assert sheets["s"][1] == [("str", "bell and nul end")]


def test_strings_beyond_the_shared_table_are_written_inline(tmp_path, monkeypatch):
    monkeypatch.setattr(lean_xlsx, "SHARED_STRINGS_MAX", 3)
    rows = [[f"value {i} & more"] for i in range(10)] + [["value 1 & more"]]
    path = tmp_path / "x.xlsx"
    sheets = _write("lean", path, [Sheet("s", [Column("a")], rows)])
    assert [r[0][1] for r in sheets["s"]] == ["a"] + [r[0] for r in rows]
    with zipfile.ZipFile(path) as package:
        sheet = package.read("xl/worksheets/sheet1.xml").decode()
        assert package.read("xl/sharedStrings.xml").decode().count("<si>") == 3
    assert sheet.count('t="inlineStr"') == 8  # the header and two values are shared, one repeat reuses its index


@pytest.mark.parametrize("day", [dt.date(1900, 1, 1), dt.date(1900, 2, 28), dt.date(1900, 3, 1), dt.date(2024, 2, 29),
                                 dt.datetime(1999, 12, 31, 23, 59, 59, 500000), dt.datetime(1900, 1, 1, 12)])
def test_dates_are_excel_serial_numbers(day):
    """Excel's 1900 epoch, with its leap-year bug, as openpyxl counts it."""
    assert lean_xlsx.excel_serial(day) == pytest.approx(to_excel(day), abs=1e-9)


@pytest.mark.parametrize(("value", "error"), [(float("nan"), ValueError), (float("inf"), ValueError),
                                              (dt.date(1899, 12, 31), ValueError), (object(), TypeError),
                                              (dt.datetime(2024, 1, 1, tzinfo=dt.UTC), TypeError)])
def test_values_xlsx_cannot_store_are_refused_and_leave_no_file(tmp_path, value, error):
    path = tmp_path / "bad.xlsx"
    with pytest.raises(error):
        lean_xlsx.write_xlsx(str(path), [Sheet("s", [Column("a")], [[1], [value]])])
    assert not path.exists()


@pytest.mark.parametrize("name", ["", "x" * 32, "a/b", "a[1]", "what?"])
def test_sheet_names_excel_refuses_are_refused(tmp_path, name):
    with pytest.raises(ValueError, match="sheet name"):
        lean_xlsx.write_xlsx(str(tmp_path / "x.xlsx"), [Sheet(name, [Column("a")], [])])


def test_a_sheet_that_breaks_its_announced_size_fails(tmp_path):
    with pytest.raises(ValueError, match="announced"):
        lean_xlsx.write_xlsx(str(tmp_path / "x.xlsx"), [Sheet("s", [Column("a")], [[1]], row_count=5)])


def test_a_row_longer_than_the_columns_fails_and_a_shorter_one_ends_empty(tmp_path):
    path = tmp_path / "x.xlsx"
    lean_xlsx.write_xlsx(str(path), [Sheet("s", [Column("a"), Column("b")], [[1], [1, 2]])])
    assert _read(path)["s"][1:] == [(1,), (1, 2)]
    with pytest.raises(ValueError, match="3 values for 2 columns"):
        lean_xlsx.write_xlsx(str(path), [Sheet("s", [Column("a"), Column("b")], [[1, 2, 3]])])


def test_a_sheet_with_no_rows_has_its_header_and_filter(tmp_path):
    path = tmp_path / "x.xlsx"
    lean_xlsx.write_xlsx(str(path), [Sheet("s", [Column("a"), Column("b")], [])])
    wb = load_workbook(path)
    assert [c.value for c in wb["s"][1]] == ["a", "b"] and wb["s"].auto_filter.ref == "A1:B1"
    wb.close()


def test_column_letters():
    assert [column_letter(i) for i in (0, 25, 26, 51, 52, 701, 702, 16383)] == \
        ["A", "Z", "AA", "AZ", "BA", "ZZ", "AAA", "XFD"]


def test_column_width_fits_the_header_and_its_filter_button():
    assert Column("x", GENERAL, 10).width == 10
    assert Column("a_rather_long_header", GENERAL, 10).width == len("a_rather_long_header") + 3


def _traced_peak(build) -> int:
    tracemalloc.start()
    try:
        build()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("writer", ["lean", "csv"])
def test_memory_does_not_grow_with_the_rows(tmp_path, writer):
    """Python's peak allocation for 2k rows and for 12k rows differ by less than 1 MiB: rows are streamed
    (holding 10k more rows of 10 cells would take about 5 MiB)."""
    from reportflow_worker.builders.demo import build_demo_csv

    def build(rows: int):
        params = {"rows": rows, "columns": 10, "seed": 1}
        if writer == "csv":
            return lambda: build_demo_csv(str(tmp_path / "m.csv"), params, lambda done, total: None)
        return lambda: lean_xlsx.write_xlsx(str(tmp_path / "m.xlsx"), demo_sheets(params, lambda d, t: None))
    small, large = _traced_peak(build(2_000)), _traced_peak(build(12_000))
    assert large - small < 1024 * 1024, (small, large)


def _local_header_has_zip64(path, name: str) -> bool:
    """Whether the entry's local header carries a ZIP64 extra field (id 0x0001)."""
    with zipfile.ZipFile(path) as package:
        offset = package.getinfo(name).header_offset
    raw = path.read_bytes()
    name_length, extra_length = int.from_bytes(raw[offset + 26:offset + 28], "little"), \
        int.from_bytes(raw[offset + 28:offset + 30], "little")
    extra = raw[offset + 30 + name_length:offset + 30 + name_length + extra_length]
    while len(extra) >= 4:
        if int.from_bytes(extra[:2], "little") == 1:
            return True
        extra = extra[4 + int.from_bytes(extra[2:4], "little"):]
    return False


def test_zip64_only_for_a_sheet_announced_near_two_gibibytes(tmp_path, monkeypatch):
    """Python's ZIP64 headers can make Excel offer a repair, so an ordinary sheet must not get them."""
    def build(name: str, row_count: int | None):
        path = tmp_path / name
        lean_xlsx.write_xlsx(str(path), [Sheet("s", [Column("a")], [[1], [2]], row_count=row_count)])
        return _local_header_has_zip64(path, "xl/worksheets/sheet1.xml")
    assert not build("announced.xlsx", 3) and not build("unknown.xlsx", None)
    monkeypatch.setattr(lean_xlsx, "ROW_BYTES_PER_CELL", lean_xlsx.ZIP64_BYTES)  # as if each cell were 2 GiB
    assert build("huge.xlsx", 3)
    assert _read(tmp_path / "huge.xlsx")["s"] == [("a",), (1,), (2,)]


def _parts(path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as package:
        return {name: package.read(name) for name in package.namelist()}


def _uniform_and_mixed_sheets():
    columns = [Column(f"c{i}") for i in range(5)]
    uniform = [[i + 0.5 if i % 3 else float(i), i, f"u{i % 700}", dt.date(2000, 1, 1 + i % 28), None]
               for i in range(1234)]
    mixed = [[1, 2.0, None, "x"], [-0.0, "y", dt.datetime(2021, 2, 3, 4, 5), True], [3]] * 200
    yield from demo_sheets({"rows": 1001, "columns": 10, "seed": 5}, lambda done, total: None)
    yield Sheet("uniform", columns, uniform, lambda: [["TOTAL", None, 3, 4.0, None]])
    yield Sheet("mixed", columns, mixed)


@pytest.mark.parametrize("shared_strings", [lean_xlsx.SHARED_STRINGS_MAX, 100])
def test_rows_written_a_chunk_at_a_time_are_the_cells_written_one_by_one(tmp_path, monkeypatch, shared_strings):
    """The writer's fast path (a chunk of uniform columns through one template) changes no byte of the file,
    also when the shared string table fills up on the way."""
    monkeypatch.setattr(lean_xlsx, "SHARED_STRINGS_MAX", shared_strings)
    lean_xlsx.write_xlsx(str(tmp_path / "fast.xlsx"), _uniform_and_mixed_sheets())
    monkeypatch.setattr(lean_xlsx._Workbook, "_uniform_rows", lambda *args: None)
    lean_xlsx.write_xlsx(str(tmp_path / "slow.xlsx"), _uniform_and_mixed_sheets())
    assert _parts(tmp_path / "fast.xlsx") == _parts(tmp_path / "slow.xlsx")
