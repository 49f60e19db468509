"""The peers bench_demo_sheet.py measures the demo builder against, each writing the same workbook.

Every peer takes the builder's own sheets (reportflow_worker.builders.demo.demo_sheets: the same rows,
totals and summary, tallied the same way) and writes them with what its library offers: bold frozen
header, autofilter, widths, number formats, a bold footer. Where a library cannot do one of these, the
`LIMITS` entry says so (and the bench prints it). `build_today` is the builder as it was before issue 14
(commit 3e79d9d): openpyxl write-only, plain values, one sheet, a totals row summing every number column.
"""
from __future__ import annotations

from collections.abc import Iterable
from itertools import chain

from reportflow_worker.builders.demo import SUMMARY_SHEET, DemoTally, demo_columns, demo_rows
from reportflow_worker.builders.tables import GENERAL, Sheet

LIMITS = {
    "pyexcelerate": "keeps every cell in memory until it saves; its filter covers the totals row too; it puts "
                    "number formats into styles.xml unescaped (a quote breaks the file), so it is given them escaped",
    "rustpy-xlsxwriter": "rows as dicts; numbers come back as floats (433.0); its filter covers the totals row",
    "xlsxwriter": "",
}


def build_today(path: str, params: dict, on_rows) -> int:
    """The demo builder of commit 3e79d9d, verbatim but for names: the baseline of the 4x target."""
    from openpyxl import Workbook

    rows, columns = int(params["rows"]), demo_columns(int(params["columns"]))
    wb = Workbook(write_only=True)
    ws = wb.create_sheet("demo")
    ws.append([name for name, _kind in columns])
    numeric = [i for i, (_n, kind) in enumerate(columns) if kind in ("int", "float")]
    sums = [0] * len(columns)
    for n, row in enumerate(demo_rows(rows, len(columns), int(params["seed"])), start=1):
        ws.append(row)
        for i in numeric:
            sums[i] += row[i]
        if n % 1000 == 0:
            on_rows(n, rows)
    totals = ["TOTAL"] + [int(sums[i]) if kind == "int" else round(sums[i], 2) if kind == "float" else None
                          for i, (_name, kind) in enumerate(columns)][1:]
    ws.append(totals)
    on_rows(rows, rows)
    wb.save(path)
    return rows


def write_xlsxwriter(path: str, sheets: Iterable[Sheet]) -> None:
    """XlsxWriter in constant_memory mode: each row is flushed to a temporary file as the next one starts."""
    import xlsxwriter

    wb = xlsxwriter.Workbook(path, {"constant_memory": True})
    formats: dict = {}

    def fmt(number_format: str, bold: bool):
        key = (number_format, bold)
        if key not in formats:
            props = {"bold": True} if bold else {}
            if number_format != GENERAL:
                props["num_format"] = number_format
            formats[key] = wb.add_format(props) if props else None
        return formats[key]

    for sheet in sheets:
        ws = wb.add_worksheet(sheet.name)
        columns = list(sheet.columns)
        ws.freeze_panes(1, 0)
        for i, column in enumerate(columns):
            ws.set_column(i, i, column.width)
        ws.write_row(0, 0, [c.name for c in columns], fmt(GENERAL, True))
        body = [fmt(c.number_format, False) for c in columns]
        n = 1
        for row in sheet.rows:
            for j, value in enumerate(row):
                if value is not None:
                    ws.write(n, j, value, body[j])
            n += 1
        ws.autofilter(0, 0, n - 1, len(columns) - 1)
        footer = [fmt(c.number_format, True) for c in columns]
        for row in sheet.footer():
            for j, value in enumerate(row):
                if value is not None:
                    ws.write(n, j, value, footer[j])
            n += 1
    wb.close()


def write_pyexcelerate(path: str, sheets: Iterable[Sheet]) -> None:
    """PyExcelerate: the whole sheet as a list of lists, styled by column, written at save."""
    from xml.sax.saxutils import escape

    from pyexcelerate import Font, Panes, Style, Workbook
    from pyexcelerate import Format as PyexFormat

    def Format(code: str):  # noqa: N802 - stands in for pyexcelerate's Format, which does not escape the code
        return PyexFormat(escape(code, {'"': "&quot;"}))

    wb = Workbook()
    for sheet in sheets:
        columns = list(sheet.columns)
        data = [[c.name for c in columns]] + [list(r) for r in sheet.rows]
        filtered = len(data)
        data += [list(r) for r in sheet.footer()]
        ws = wb.new_sheet(sheet.name, data=data)
        ws.panes = Panes(y=1)
        ws.auto_filter = True
        for i, column in enumerate(columns, start=1):
            style = Style(size=column.width)
            if column.number_format != GENERAL:
                style = Style(size=column.width, format=Format(column.number_format))
            ws.set_col_style(i, style)
            ws.set_cell_style(1, i, Style(font=Font(bold=True)))
            for r in range(filtered + 1, len(data) + 1):
                if data[r - 1][i - 1] is not None:  # a styled empty cell would come out as ''
                    ws.set_cell_style(r, i, Style(font=Font(bold=True), format=Format(column.number_format)))
    wb.save(path)


def write_rustpy_xlsxwriter(path: str, sheets: Iterable[Sheet], params: dict) -> None:
    """rustpy-xlsxwriter (rust_xlsxwriter underneath): rows as dicts, its constant-memory mode.

    It takes every sheet's name and settings before it writes the first, so the summary (made only once the
    data sheet has been written) is announced from its known columns and handed over as a generator.
    """
    from rustpy_xlsxwriter import Format, write_worksheets

    sheets = iter(sheets)
    first = next(sheets)
    summary = DemoTally(demo_columns(int(params["columns"])), int(params["rows"])).summary_columns()
    announced = [(first.name, list(first.columns)), (SUMMARY_SHEET, summary)]
    settings = {"autofilter": {name: True for name, _c in announced},
                "column_widths": {name: [c.width for c in cols] for name, cols in announced},
                "column_formats": {name: [Format().set_num_format(c.number_format) for c in cols]
                                   for name, cols in announced},
                "header_format": {name: Format().set_bold() for name, _c in announced}}

    def records(sheet: Sheet):
        names = [c.name for c in sheet.columns]
        return (dict(zip(names, row, strict=False)) for row in chain(sheet.rows, _lazy(sheet.footer)))

    def summary():
        yield from records(next(sheets))

    write_worksheets([(first.name, records(first)), (SUMMARY_SHEET, summary())], path,
                     freeze_panes={"general": {"row": 1, "col": 0}}, **settings)


def _lazy(make):
    yield from make()


def write_workbook(library: str, path: str, sheets: Iterable[Sheet], params: dict) -> None:
    if library == "rustpy-xlsxwriter":
        return write_rustpy_xlsxwriter(path, sheets, params)
    return {"xlsxwriter": write_xlsxwriter, "pyexcelerate": write_pyexcelerate}[library](path, sheets)
