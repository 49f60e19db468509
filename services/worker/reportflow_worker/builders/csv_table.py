"""CSV output: one sheet's header and rows, streamed with the csv module (RFC 4180: commas, CRLF, UTF-8).

A CSV file is data for the next program, so it holds the rows alone: no totals (a program would read a
totals line as one more row), no formats, no second sheet. Dates are ISO 8601, numbers as Python prints
them (the shortest text that reads back as the same number), a missing value is an empty field.

Called by the report builders through `write_csv(path, sheet)`; a failure removes the partial file.
"""
from __future__ import annotations

import csv
import os
from itertools import islice

from .tables import Sheet

FLUSH_ROWS = 1000


def write_csv(path: str, sheet: Sheet) -> None:
    try:
        with open(path, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f, lineterminator="\r\n")
            writer.writerow([c.name for c in sheet.columns])
            rows = iter(sheet.rows)
            while chunk := list(islice(rows, FLUSH_ROWS)):
                writer.writerows(chunk)
    except BaseException:
        if os.path.exists(path):
            os.remove(path)
        raise
