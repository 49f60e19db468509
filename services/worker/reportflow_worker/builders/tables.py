"""What a report file holds, said once for every writer: sheets of typed columns, streamed rows, a footer.

The report modules (demo, activity) describe their sheets with these types; a writer (lean_xlsx,
openpyxl_xlsx, csv_table) turns them into a file. A sheet's `rows` is consumed once, as it is written, so
memory stays flat; its `footer` is called only after the last row (totals depend on every row), and the
`sheets` a writer is given may be a generator, so a later sheet can summarise what an earlier one wrote.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

# Excel number formats, by what a column holds
DATE_FORMAT = "yyyy-mm-dd"
DATETIME_FORMAT = "yyyy-mm-dd hh:mm:ss"
INTEGER_FORMAT = "#,##0"
CURRENCY_FORMAT = '"$"#,##0.00'
DECIMAL_FORMAT = "#,##0.000"
GENERAL = "General"

FILTER_BUTTON = 3  # characters of width the autofilter's drop-down button takes from a header cell


@dataclass(frozen=True)
class Column:
    """One column: its header, how its cells are shown (Excel number format), and its width in characters."""

    name: str
    number_format: str = GENERAL
    min_width: float = 10

    @property
    def width(self) -> float:
        return max(self.min_width, len(self.name) + FILTER_BUTTON)


@dataclass
class Sheet:
    """One sheet: a bold header row (frozen, with an autofilter over header and rows), then `rows`, then
    the rows `footer()` returns (bold, outside the filter, so sorting never moves a total).

    `row_count` (every row of the sheet: header, rows and footer), when known before writing, lets the xlsx
    writer state the sheet's size up front.
    """

    name: str
    columns: Sequence[Column]
    rows: Iterable[Sequence]
    footer: Callable[[], Sequence[Sequence]] = field(default=lambda: ())
    row_count: int | None = None


def column_letter(index: int) -> str:
    """0 -> A, 25 -> Z, 26 -> AA: the letters of a zero-based column index."""
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(65 + rest) + letters
    return letters
