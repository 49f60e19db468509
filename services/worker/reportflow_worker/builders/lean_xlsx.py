"""reportflow's own xlsx writer: rows go straight to a deflate stream as escaped XML text, one sheet at a time.

Why our own: openpyxl builds an lxml element per cell, which was 93 % of a report's build time (issue 14);
XlsxWriter, PyExcelerate and rustpy-xlsxwriter were measured too (bench/README.md: the figures and the
decision). This writes the few parts a workbook needs (SpreadsheetML, ECMA-376) and nothing else: typed
cells, shared strings (up to SHARED_STRINGS_MAX distinct values, inline strings after that, so memory stays
flat), number formats, a bold frozen header with an autofilter, column widths and a bold footer. Every test
reads its files back with openpyxl.

Called by the report builders through `write_xlsx(path, sheets)`; a failure removes the partial file.
"""
from __future__ import annotations

import math
import os
import re
import zipfile
from collections.abc import Iterable
from datetime import date, datetime
from itertools import chain, islice
from xml.sax.saxutils import escape, quoteattr

from .tables import GENERAL, Sheet, column_letter

SHARED_STRINGS_MAX = 50_000  # distinct strings kept in the shared table; any further ones are written inline
COMPRESS_LEVEL = 4  # zlib level, measured on 100k x 10: 1 = 0.20 s, 8.6 MB; 4 = 0.28 s, 6.9 MB; 6 = 0.75 s, 6.3 MB
FLUSH_ROWS = 500  # rows joined into one write to the deflate stream
MAX_ROWS, MAX_COLUMNS, MAX_CELL_CHARS = 1_048_576, 16_384, 32_767  # Excel's limits
# Past 2 GiB a zip entry needs ZIP64 sizes, which the zipfile module must be told of before the entry is written,
# and which can make Excel offer to "repair" the file (XlsxWriter's docs): only a sheet whose announced size may
# come near the limit (1M rows x 50 columns) gets them; a larger sheet of unknown size fails instead.
ZIP64_BYTES = (1 << 31) - 1
ROW_BYTES_PER_CELL = 48  # a generous estimate of one cell's XML, for the decision above

BUILTIN_NUMBER_FORMATS = {GENERAL: 0, "0": 1, "0.00": 2, "#,##0": 3, "#,##0.00": 4, "0%": 9, "0.00%": 10}
FIRST_CUSTOM_FORMAT = 164
_EXCEL_EPOCH = date(1899, 12, 30).toordinal()
_FIRST_DAY = date(1900, 1, 1).toordinal()
_AFTER_LEAP_BUG = date(1900, 3, 1).toordinal()  # Excel counts a 29 February 1900 that never was
DATE_CACHE_MAX = 10_000
# Excel's number of each date met (a pure function of the date), kept for the process: a report of a year's
# sales converts 366 dates, every report again when the cache was the workbook's own
_SERIALS: dict[date, int] = {}
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_SHEET_NAME_FORBIDDEN = re.compile(r"[\[\]:*?/\\]")

_MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
_REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_PKG_REL = "http://schemas.openxmlformats.org/package/2006/relationships"
_XML_DECL = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
_SHEET_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"


def write_xlsx(path: str, sheets: Iterable[Sheet]) -> None:
    """Write `sheets` (consumed one after another) as an xlsx file at `path`."""
    try:
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=COMPRESS_LEVEL) as package:
            book = _Workbook(package)
            for sheet in sheets:
                book.write_sheet(sheet)
            book.finish()
    except BaseException:
        if os.path.exists(path):
            os.remove(path)  # half a workbook is no use to anyone
        raise


def excel_serial(value: date) -> int | float:
    """The number Excel stores for a date (whole days since its 1900 epoch) or a naive datetime."""
    ordinal = value.toordinal()
    if ordinal < _FIRST_DAY:
        raise ValueError(f"{value} is before 1900, which Excel cannot store as a date")
    days = ordinal - _EXCEL_EPOCH - (1 if ordinal < _AFTER_LEAP_BUG else 0)
    if not isinstance(value, datetime):
        return days
    if value.tzinfo is not None:
        raise TypeError("xlsx has no time zones: pass naive (UTC) datetimes")
    seconds = value.hour * 3600 + value.minute * 60 + value.second + value.microsecond / 1e6
    return days + seconds / 86400


def _number(value: int | float, ref: str) -> str:
    if isinstance(value, int):
        return str(int(value))
    if not math.isfinite(value):
        raise ValueError(f"cell {ref}: xlsx cannot store {value}")
    text = repr(float(value))
    return text[:-2] if text.endswith(".0") else text


def _clean_text(value: str) -> str:
    """Drop what XML 1.0 cannot carry; cut at Excel's cell limit."""
    return _NOT_XML.sub("", value)[:MAX_CELL_CHARS]


class _Workbook:
    """The parts of one xlsx package; sheets are streamed in, the small parts are written at the end."""

    def __init__(self, package: zipfile.ZipFile):
        self.package = package
        self.sheets: list[tuple[str, str | None]] = []  # (name, autofilter range)
        self.strings: dict[str, int] = {}
        self.dates = _SERIALS  # shared by every workbook of the process, at most DATE_CACHE_MAX dates
        self.formats: dict[str, int] = {}
        self.styles: dict[tuple[int, bool], int] = {(0, False): 0}
        self._templates: dict[tuple, str] = {}  # a chunk's XML with its values left out, by cell kinds

    def style(self, number_format: str, bold: bool) -> str:
        """The ` s="n"` attribute of a cell with this number format and weight ('' for the default)."""
        fmt = BUILTIN_NUMBER_FORMATS.get(number_format)
        if fmt is None:
            fmt = self.formats.setdefault(number_format, FIRST_CUSTOM_FORMAT + len(self.formats))
        index = self.styles.setdefault((fmt, bold), len(self.styles))
        return f' s="{index}"' if index else ""

    def write_sheet(self, sheet: Sheet) -> None:
        name, columns = sheet.name, list(sheet.columns)
        if not 1 <= len(name) <= 31 or _SHEET_NAME_FORBIDDEN.search(name) or name in {n for n, _ in self.sheets}:
            raise ValueError(f"invalid or repeated sheet name {name!r}")
        if not 1 <= len(columns) <= MAX_COLUMNS:
            raise ValueError(f"a sheet has 1 to {MAX_COLUMNS} columns, not {len(columns)}")
        letters = [column_letter(i) for i in range(len(columns))]
        body_styles = [self.style(c.number_format, False) for c in columns]
        footer_styles = [self.style(c.number_format, True) for c in columns]
        head = self.style(GENERAL, True)
        last = letters[-1]
        zip64 = sheet.row_count is not None and sheet.row_count * len(columns) * ROW_BYTES_PER_CELL > ZIP64_BYTES
        with self.package.open(f"xl/worksheets/sheet{len(self.sheets) + 1}.xml", "w", force_zip64=zip64) as out:
            dimension = f'<dimension ref="A1:{last}{sheet.row_count}"/>' if sheet.row_count else ""
            tab = ' tabSelected="1"' if not self.sheets else ""
            widths = "".join(f'<col min="{i}" max="{i}" width="{c.width:g}" customWidth="1"/>'
                             for i, c in enumerate(columns, start=1))
            out.write((f'{_XML_DECL}<worksheet xmlns="{_MAIN}" xmlns:r="{_REL}">{dimension}'
                       f'<sheetViews><sheetView workbookViewId="0"{tab}><pane ySplit="1" topLeftCell="A2" '
                       f'activePane="bottomLeft" state="frozen"/><selection pane="bottomLeft" activeCell="A2" '
                       f'sqref="A2"/></sheetView></sheetViews><sheetFormatPr defaultRowHeight="15"/>'
                       f'<cols>{widths}</cols><sheetData>').encode())
            header = "".join(self._cell(letter, 1, head, c.name) for letter, c in zip(letters, columns, strict=True))
            out.write(f'<row r="1">{header}</row>'.encode())
            n = self._write_rows(out, 2, sheet.rows, letters, body_styles)
            filtered = f"A1:{last}{n - 1}"
            n = self._write_rows(out, n, sheet.footer(), letters, footer_styles)
            if sheet.row_count is not None and n - 1 != sheet.row_count:
                raise ValueError(f"sheet {name!r} announced {sheet.row_count} rows and has {n - 1}")
            out.write(f'</sheetData><autoFilter ref="{filtered}"/><pageMargins left="0.7" right="0.7" top="0.75" '
                      f'bottom="0.75" header="0.3" footer="0.3"/></worksheet>'.encode())
        self.sheets.append((name, filtered))

    def _write_rows(self, out, n: int, rows: Iterable, letters: list[str], styles: list[str]) -> int:
        """Write `rows` from sheet row `n` on, FLUSH_ROWS at a time; returns the number of the next row."""
        rows = iter(rows)
        while chunk := list(islice(rows, FLUSH_ROWS)):
            text = self._uniform_rows(n, chunk, letters, styles)
            if text is None:
                text = self._any_rows(n, chunk, letters, styles)
            out.write(text.encode())
            n += len(chunk)
        return n

    def _any_rows(self, n: int, chunk: list, letters: list[str], styles: list[str]) -> str:
        """Rows of any values, cell by cell."""
        parts, cells, width = [], self._cells, len(letters)
        for row in chunk:
            if n > MAX_ROWS:
                raise ValueError(f"a sheet holds at most {MAX_ROWS} rows")
            if len(row) > width:
                raise ValueError(f"row {n} has {len(row)} values for {width} columns")
            parts.append(f'<row r="{n}">{cells(n, row, letters, styles)}</row>')
            n += 1
        return "".join(parts)

    def _uniform_rows(self, n: int, chunk: list, letters: list[str], styles: list[str]) -> str | None:
        """Rows whose every column holds one type (float, int, date, shared string, or only None), column by
        column: the values are converted a column at a time and the XML made by one `%` over a template of the
        whole chunk, so no Python code runs per cell (the writer's time per row was most of a small report's
        fixed cost). The cells are byte for byte those `_cells` writes. Rows up to the last one with a string new
        to the shared table go to `_any_rows` (which adds them in its order). None when the rows are not uniform
        (then `_any_rows` writes them, and raises for what is wrong)."""
        size, width = len(chunk), len(letters)
        if n + size - 1 > MAX_ROWS or set(map(len, chunk)) != {width}:
            return None
        numbers = list(map(str, range(n, n + size)))  # each row's number as text, once for all its cells
        kinds, args, floats, new_until = [], [numbers], False, 0
        for letter, style, column in zip(letters, styles, zip(*chunk, strict=True), strict=True):
            types = set(map(type, column))
            if len(types) != 1:
                return None
            kind = types.pop()
            if kind is float:
                if not all(map(math.isfinite, column)):
                    return None
                values, cell, floats = column, f'<c r="{letter}%s"{style}><v>%r</v></c>', True
            elif kind is int:
                values, cell = column, f'<c r="{letter}%s"{style}><v>%d</v></c>'
            elif kind is str:
                values, cell = list(map(self.strings.get, column)), f'<c r="{letter}%s"{style} t="s"><v>%d</v></c>'
                if None in values and len(self.strings) >= SHARED_STRINGS_MAX:
                    return None  # some will be written inline: cell by cell
                if None in values:  # up to the row where the last string new to the table first appears
                    new_until = max(new_until, *(column.index(v) + 1 for v in set(column) - self.strings.keys()))
            elif kind is date:
                values, cell = self._serials(column), f'<c r="{letter}%s"{style}><v>%s</v></c>'
            elif kind is type(None):
                kinds.append("")
                continue
            else:
                return None
            kinds.append(cell)
            args += (numbers, values)
        if new_until:  # `_any_rows` adds new strings in its order (row by row), then the rest come here again
            head, rest = chunk[:new_until], chunk[new_until:]
            text = self._any_rows(n, head, letters, styles)
            if rest:
                n += new_until
                text += self._uniform_rows(n, rest, letters, styles) or self._any_rows(n, rest, letters, styles)
            return text
        key = (tuple(kinds), size)
        template = self._templates.get(key)
        if template is None:
            if len(self._templates) > 64:
                self._templates.clear()
            template = self._templates[key] = ('<row r="%s">' + "".join(kinds) + "</row>") * size
        text = template % tuple(chain.from_iterable(zip(*args, strict=True)))
        # 205.0 as 205, as `_cells` writes it: only a float's repr can end in ".0" right before "</v>"
        return text.replace(".0</v>", "</v>") if floats else text

    def _serials(self, column) -> list[int]:
        """Excel's numbers for a column of dates (cached, as in `_cells`)."""
        dates = self.dates
        serials = list(map(dates.get, column))
        if None in serials:
            for i, serial in enumerate(serials):
                if serial is None:
                    value = column[i]
                    serial = serials[i] = excel_serial(value)
                    if len(dates) < DATE_CACHE_MAX:
                        dates[value] = serial
        return serials

    def _cells(self, n: int, row, letters: list[str], styles: list[str]) -> str:
        """One row's cells. The common types come first: this loop is most of the writer's time."""
        parts = []
        strings, dates = self.strings, self.dates
        for value, letter, style in zip(row, letters, styles, strict=False):  # a short row ends in empty cells
            kind = type(value)
            if kind is float:
                if value - value != 0:
                    raise ValueError(f"cell {letter}{n}: xlsx cannot store {value}")
                text = repr(value)  # the shortest text that reads back as the same float
                if text[-2:] == ".0":
                    text = text[:-2]  # 205.0 as 205, as Excel and openpyxl write it
                parts.append(f'<c r="{letter}{n}"{style}><v>{text}</v></c>')
            elif kind is int:
                parts.append(f'<c r="{letter}{n}"{style}><v>{value}</v></c>')
            elif kind is str:
                index = strings.get(value)
                if index is None:
                    parts.append(self._cell(letter, n, style, value))
                else:
                    parts.append(f'<c r="{letter}{n}"{style} t="s"><v>{index}</v></c>')
            elif kind is date:
                serial = dates.get(value)
                if serial is None:
                    serial = excel_serial(value)
                    if len(dates) < DATE_CACHE_MAX:
                        dates[value] = serial
                parts.append(f'<c r="{letter}{n}"{style}><v>{serial}</v></c>')
            elif value is not None:
                parts.append(self._cell(letter, n, style, value))
        return "".join(parts)

    def _cell(self, letter: str, n: int, style: str, value) -> str:
        """Any one cell: the less common types, and strings not yet in the shared table."""
        ref = f"{letter}{n}"
        if value is None:
            return ""
        if isinstance(value, bool):
            return f'<c r="{ref}"{style} t="b"><v>{int(value)}</v></c>'
        if isinstance(value, int | float):
            return f'<c r="{ref}"{style}><v>{_number(value, ref)}</v></c>'
        if isinstance(value, str):
            if value in self.strings:
                return f'<c r="{ref}"{style} t="s"><v>{self.strings[value]}</v></c>'
            if len(self.strings) < SHARED_STRINGS_MAX:
                index = self.strings[value] = len(self.strings)
                return f'<c r="{ref}"{style} t="s"><v>{index}</v></c>'
            text = escape(_clean_text(value))
            return f'<c r="{ref}"{style} t="inlineStr"><is><t xml:space="preserve">{text}</t></is></c>'
        if isinstance(value, date):
            return f'<c r="{ref}"{style}><v>{_number(excel_serial(value), ref)}</v></c>'
        raise TypeError(f"cell {ref}: cannot write a {type(value).__name__} to xlsx")

    def finish(self) -> None:
        """The workbook, its relationships, styles, shared strings and content types."""
        count = len(self.sheets)
        if not count:
            raise ValueError("a workbook needs at least one sheet")
        sheets = "".join(f'<sheet name={quoteattr(name)} sheetId="{i}" r:id="rId{i}"/>'
                         for i, (name, _range) in enumerate(self.sheets, start=1))
        names = "".join(
            f'<definedName name="_xlnm._FilterDatabase" localSheetId="{i}" hidden="1">'
            f"{escape(_quoted_sheet(name))}!{_absolute(ref)}</definedName>"
            for i, (name, ref) in enumerate(self.sheets))
        self._put("xl/workbook.xml",
                  f'<workbook xmlns="{_MAIN}" xmlns:r="{_REL}"><bookViews><workbookView activeTab="0"/>'
                  f"</bookViews><sheets>{sheets}</sheets><definedNames>{names}</definedNames></workbook>")
        rels = "".join(f'<Relationship Id="rId{i}" Type="{_REL}/worksheet" Target="worksheets/sheet{i}.xml"/>'
                       for i in range(1, count + 1))
        self._put("xl/_rels/workbook.xml.rels",
                  f'<Relationships xmlns="{_PKG_REL}">{rels}'
                  f'<Relationship Id="rId{count + 1}" Type="{_REL}/styles" Target="styles.xml"/>'
                  f'<Relationship Id="rId{count + 2}" Type="{_REL}/sharedStrings" Target="sharedStrings.xml"/>'
                  f"</Relationships>")
        self._put("xl/styles.xml", self._styles_xml())
        self._put("xl/sharedStrings.xml", self._strings_xml())
        types = "".join(f'<Override PartName="/xl/worksheets/sheet{i}.xml" ContentType="{_SHEET_TYPE}"/>'
                        for i in range(1, count + 1))
        office = "application/vnd.openxmlformats-officedocument.spreadsheetml"
        self._put("[Content_Types].xml",
                  '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
                  '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
                  '<Default Extension="xml" ContentType="application/xml"/>'
                  f'<Override PartName="/xl/workbook.xml" ContentType="{office}.sheet.main+xml"/>{types}'
                  f'<Override PartName="/xl/styles.xml" ContentType="{office}.styles+xml"/>'
                  f'<Override PartName="/xl/sharedStrings.xml" ContentType="{office}.sharedStrings+xml"/></Types>')
        self._put("_rels/.rels",
                  f'<Relationships xmlns="{_PKG_REL}"><Relationship Id="rId1" Type="{_REL}/officeDocument" '
                  f'Target="xl/workbook.xml"/></Relationships>')

    def _put(self, name: str, xml: str) -> None:
        self.package.writestr(name, _XML_DECL + xml)

    def _styles_xml(self) -> str:
        formats = "".join(f"<numFmt numFmtId={quoteattr(str(i))} formatCode={quoteattr(code)}/>"
                          for code, i in self.formats.items())
        font = '<sz val="11"/><name val="Calibri"/><family val="2"/>'
        xfs = "".join(f'<xf numFmtId="{fmt}" fontId="{int(bold)}" fillId="0" borderId="0" xfId="0"'
                      + (' applyNumberFormat="1"' if fmt else "") + (' applyFont="1"' if bold else "") + "/>"
                      for (fmt, bold) in self.styles)
        formats = f'<numFmts count="{len(self.formats)}">{formats}</numFmts>' if self.formats else ""
        return (f'<styleSheet xmlns="{_MAIN}">{formats}'
                f'<fonts count="2"><font>{font}</font><font><b/>{font}</font></fonts>'
                '<fills count="2"><fill><patternFill patternType="none"/></fill>'
                '<fill><patternFill patternType="gray125"/></fill></fills>'
                '<borders count="1"><border><left/><right/><top/><bottom/><diagonal/></border></borders>'
                '<cellStyleXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0"/></cellStyleXfs>'
                f'<cellXfs count="{len(self.styles)}">{xfs}</cellXfs>'
                '<cellStyles count="1"><cellStyle name="Normal" xfId="0" builtinId="0"/></cellStyles></styleSheet>')

    def _strings_xml(self) -> str:
        items = "".join(f'<si><t xml:space="preserve">{escape(_clean_text(s))}</t></si>' for s in self.strings)
        return f'<sst xmlns="{_MAIN}" count="{len(self.strings)}" uniqueCount="{len(self.strings)}">{items}</sst>'


def _quoted_sheet(name: str) -> str:
    return "'" + name.replace("'", "''") + "'"


def _absolute(ref: str) -> str:
    """A1:J10 -> $A$1:$J$10"""
    return ":".join(re.sub(r"([A-Z]+)(\d+)", r"$\1$\2", part) for part in ref.split(":"))
