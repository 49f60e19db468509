"""The xlsx writer on openpyxl's write-only mode: the engine before reportflow's own, kept selectable
(`XLSX_ENGINE=openpyxl`) as a well-known reference. It writes the same sheets, formats and cell values as
lean_xlsx, about nine times slower (bench/README.md). openpyxl writes numbers with 16 significant digits,
which every value of the demo report fits in.

Called by the report builders through `write_xlsx(path, sheets)`; a failure removes the partial file.
openpyxl streams each sheet into a temporary file, which it only deletes at exit when a build stops early;
the job's scratch folder (builders.job_scratch_dir) takes those away.
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.styles import Font

from .tables import GENERAL, Column, Sheet, column_letter

_BOLD = Font(bold=True)


def write_xlsx(path: str, sheets: Iterable[Sheet]) -> None:
    """Write `sheets` (consumed one after another) as an xlsx file at `path`."""
    try:
        wb = Workbook(write_only=True)  # rows go to disk as they are appended: memory stays flat
        for sheet in sheets:
            _write_sheet(wb, sheet)
        wb.save(path)
    except BaseException:
        if os.path.exists(path):
            os.remove(path)
        raise


def _write_sheet(wb: Workbook, sheet: Sheet) -> None:
    ws = wb.create_sheet(sheet.name)
    columns = list(sheet.columns)
    # the sheet view and widths precede the rows in the file: set them before the first append
    ws.freeze_panes = "A2"
    for i, column in enumerate(columns):
        ws.column_dimensions[column_letter(i)].width = column.width
    ws.append([_styled(ws, c.name, GENERAL, True) for c in columns])
    formats = [c.number_format for c in columns]
    plain = all(f == GENERAL for f in formats)
    n = 1
    for row in sheet.rows:
        ws.append(row if plain else [_styled(ws, v, f, False) for v, f in zip(row, formats, strict=False)])
        n += 1
    ws.auto_filter.ref = f"A1:{column_letter(len(columns) - 1)}{n}"
    for row in sheet.footer():
        ws.append(_footer_cells(ws, row, columns))


def _styled(ws, value, number_format: str, bold: bool):
    if value is None or (number_format == GENERAL and not bold):
        return value
    cell = WriteOnlyCell(ws, value=value)
    if number_format != GENERAL:
        cell.number_format = number_format
    if bold:
        cell.font = _BOLD
    return cell


def _footer_cells(ws, row: Sequence, columns: list[Column]) -> list:
    return [_styled(ws, v, c.number_format, True) for v, c in zip(row, columns, strict=False)]
