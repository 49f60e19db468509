"""The `demo` report: a deterministic sales-like sheet (same params, same cells), streamed row by row.

The workbook: sheet `demo` (header, one row per sale, a TOTAL row under the additive columns) and sheet
`summary` (orders and sums by region and product, with its own TOTAL row). The CSV holds the sales rows
alone. Totals are exact: each column is summed per chunk with math.fsum and carried as a whole number of
cents (or thousandths), so a million rows add up to the cent.
"""
from __future__ import annotations

import math
import random
from collections.abc import Iterator
from datetime import date, timedelta
from functools import cache
from itertools import islice
from operator import itemgetter

from . import CHUNK_ROWS, ProgressCallback, xlsx_writer
from .csv_table import write_csv
from .tables import (
    CURRENCY_FORMAT,
    DATE_FORMAT,
    DECIMAL_FORMAT,
    GENERAL,
    INTEGER_FORMAT,
    Column,
    Sheet,
)

REGIONS = ("North", "South", "East", "West", "Central")
PRODUCTS = ("Widget", "Gadget", "Gizmo", "Doohickey", "Sprocket", "Flange", "Bracket", "Valve")
BASE_DATE = date(2024, 1, 1)
# name, kind: the first eight columns; more columns add metrics alternating int and float
BASE_COLUMNS = (("date", "date"), ("region", "text"), ("product", "text"), ("units", "int"),
                ("unit_price", "float"), ("revenue", "float"), ("discount", "float"), ("net_revenue", "float"))
TOTAL_LABEL = "TOTAL"
DATA_SHEET, SUMMARY_SHEET = "demo", "summary"
CURRENCY_COLUMNS = frozenset({"unit_price", "revenue", "discount", "net_revenue"})
NOT_ADDITIVE = frozenset({"unit_price"})  # a price summed over sales means nothing
SUMMARY_KEYS = ("region", "product")
SUMMARY_SUMS = ("units", "revenue", "discount", "net_revenue")
ORDERS = "orders"
KIND_FORMATS = {"date": DATE_FORMAT, "text": GENERAL, "int": INTEGER_FORMAT, "float": DECIMAL_FORMAT}
KIND_WIDTHS = {"date": 11, "text": 11, "int": 10, "float": 12}
CURRENCY_WIDTH = 14
# the largest value one row can hold, by column (metrics by kind): a total's width follows from the row count
LARGEST_IN_A_ROW = {"units": 500, "unit_price": 250.0, "revenue": 125_000.0, "discount": 18_750.0,
                    "net_revenue": 125_000.0, "int": 10_000, "float": 1000.0}


def demo_columns(columns: int) -> list[tuple[str, str]]:
    extra = [(f"metric_{i}", "int" if i % 2 else "float") for i in range(1, columns - len(BASE_COLUMNS) + 1)]
    return list(BASE_COLUMNS + tuple(extra))[:columns]


def _below(getrandbits, n: int):
    """A function drawing uniformly from range(n) exactly as `random.Random.randrange(n)` does: rejection
    sampling of n.bit_length() random bits (one call instead of randrange's four, the same draws)."""
    k = n.bit_length()

    def draw() -> int:
        r = getrandbits(k)
        while r >= n:
            r = getrandbits(k)
        return r
    return draw


@cache
def _dates() -> tuple[date, ...]:
    return tuple(BASE_DATE + timedelta(days=d) for d in range(366))


DISCOUNT_RATES = (0.0, 0.05, 0.1, 0.15)


def demo_rows(rows: int, columns: int, seed: int):
    """Yield each data row; the values depend only on (rows, columns, seed).

    The draws are those of `randint`, `uniform`, `choice` and `randrange` on `random.Random(seed)`, in the
    order of `demo_rows_reference` (a test holds them equal), made with `getrandbits` and `random` directly:
    this loop was a fifth of a small report's build. `randrange(n)` is rejection sampling of n.bit_length()
    random bits; the base columns' draws do it inline (a function call per draw was a third of the loop)."""
    rng = random.Random(seed)
    random_, getrandbits = rng.random, rng.getrandbits
    metric_int = _below(getrandbits, 10_001)
    n_units, n_rates, n_days, n_regions, n_products = 500, len(DISCOUNT_RATES), 366, len(REGIONS), len(PRODUCTS)
    k_units, k_rates, k_days = n_units.bit_length(), n_rates.bit_length(), n_days.bit_length()
    k_regions, k_products = n_regions.bit_length(), n_products.bit_length()
    extra, dates = max(0, columns - len(BASE_COLUMNS)), _dates()
    for _ in range(rows):
        units = getrandbits(k_units)
        while units >= n_units:
            units = getrandbits(k_units)
        units += 1
        price = round(1.0 + 249.0 * random_(), 2)
        revenue = round(units * price, 2)
        rate = getrandbits(k_rates)
        while rate >= n_rates:
            rate = getrandbits(k_rates)
        if rate:
            discount = round(revenue * DISCOUNT_RATES[rate], 2)
            net = round(revenue - discount, 2)
        else:  # what the rounding gives for no discount: 0.0, and revenue (already rounded) as it is
            discount, net = 0.0, revenue
        day = getrandbits(k_days)
        while day >= n_days:
            day = getrandbits(k_days)
        region = getrandbits(k_regions)
        while region >= n_regions:
            region = getrandbits(k_regions)
        product = getrandbits(k_products)
        while product >= n_products:
            product = getrandbits(k_products)
        row = [dates[day], REGIONS[region], PRODUCTS[product], units, price, revenue, discount, net]
        if extra:
            for i in range(1, extra + 1):
                row.append(metric_int() if i % 2 else round(1000.0 * random_(), 3))
            yield row[:columns]
        elif columns < 8:
            yield row[:columns]
        else:
            yield row


def demo_rows_reference(rows: int, columns: int, seed: int):
    """`demo_rows` written with `random.Random`'s public draws: the definition the fast one is tested against."""
    rng = random.Random(seed)
    extra = max(0, columns - len(BASE_COLUMNS))
    for _ in range(rows):
        units = rng.randint(1, 500)
        price = round(rng.uniform(1.0, 250.0), 2)
        revenue = round(units * price, 2)
        discount = round(revenue * rng.choice((0.0, 0.05, 0.1, 0.15)), 2)
        row = [BASE_DATE + timedelta(days=rng.randrange(366)), rng.choice(REGIONS), rng.choice(PRODUCTS),
               units, price, revenue, discount, round(revenue - discount, 2)]
        for i in range(1, extra + 1):
            row.append(rng.randint(0, 10_000) if i % 2 else round(rng.uniform(0, 1000), 3))
        yield row[:columns]


def is_additive(name: str, kind: str) -> bool:
    """Whether a column's total means something (units, money), so the TOTAL row shows it."""
    return kind in ("int", "float") and name not in NOT_ADDITIVE


def decimals_of(name: str, kind: str) -> int:
    """Decimal places of a column's values: money has cents, the float metrics thousandths."""
    if kind != "float":
        return 0
    return 2 if name in CURRENCY_COLUMNS else 3


def demo_totals(columns: list[tuple[str, str]], sums: list[float]) -> list:
    """The totals row: the label in the first column, the sum under each additive column, else empty."""
    row = []
    for i, (name, kind) in enumerate(columns):
        if i == 0:
            row.append(TOTAL_LABEL)
        elif not is_additive(name, kind):
            row.append(None)
        elif kind == "int":
            row.append(int(sums[i]))
        else:
            row.append(round(sums[i], decimals_of(name, kind)))
    return row


def demo_sheet_columns(columns: list[tuple[str, str]], rows: int = 1) -> list[Column]:
    """How each column of the `demo` sheet is shown: its number format, and a width that fits its values and
    the largest total `rows` rows can add up to (a number too wide for its cell shows as ####)."""
    out = []
    for name, kind in columns:
        width = CURRENCY_WIDTH if name in CURRENCY_COLUMNS else KIND_WIDTHS[kind]
        if is_additive(name, kind):
            largest = rows * LARGEST_IN_A_ROW.get(name, LARGEST_IN_A_ROW[kind])
            shown = f"${largest:,.2f}" if name in CURRENCY_COLUMNS else f"{largest:,.{decimals_of(name, kind)}f}"
            width = max(width, len(shown) + 2)
        out.append(Column(name, CURRENCY_FORMAT if name in CURRENCY_COLUMNS else KIND_FORMATS[kind], width))
    return out


class _ExactSum:
    """A running sum of values with at most `decimals` decimal places, kept as a whole number of units."""

    def __init__(self, decimals: int):
        self.scale, self.units = 10 ** decimals, 0

    def add(self, values) -> None:
        # fsum is exact to half an ulp; a chunk's sum is far below 2**53 units, so rounding recovers it exactly
        self.units += sum(values) if self.scale == 1 else round(math.fsum(values) * self.scale)

    @property
    def value(self) -> int | float:
        return self.units if self.scale == 1 else self.units / self.scale


class DemoTally:
    """Totals and the region x product summary, added up chunk by chunk as the rows stream past."""

    def __init__(self, columns: list[tuple[str, str]], rows: int = 1):
        self.columns, self.rows = columns, rows
        names = [name for name, _kind in columns]
        self.totals = {i: _ExactSum(decimals_of(name, kind))
                       for i, (name, kind) in enumerate(columns) if is_additive(name, kind)}
        self.keys = [names.index(k) for k in SUMMARY_KEYS if k in names]
        self.summed = [names.index(s) for s in SUMMARY_SUMS if s in names]
        self.key_of = itemgetter(*self.keys) if self.keys else None  # a value for one key, a tuple for two
        self.groups: dict = {}  # key -> [orders, then one _ExactSum per summed column]

    def add(self, chunk: list[list]) -> None:
        by_column = list(zip(*chunk, strict=True))
        for i, total in self.totals.items():
            total.add(by_column[i])
        if self.key_of is None:
            return
        buckets: dict = {}
        key_of = self.key_of
        for row in chunk:
            key = key_of(row)
            bucket = buckets.get(key)
            if bucket is None:
                buckets[key] = bucket = []
            bucket.append(row)
        for key, rows in buckets.items():
            group = self.groups.get(key)
            if group is None:
                self.groups[key] = group = [0] + [_ExactSum(decimals_of(*self.columns[i])) for i in self.summed]
            group[0] += len(rows)
            for total, i in zip(group[1:], self.summed, strict=True):
                total.add([r[i] for r in rows])

    def totals_row(self) -> list:
        sums = [self.totals[i].value if i in self.totals else 0 for i in range(len(self.columns))]
        return demo_totals(self.columns, sums)

    def summary_columns(self) -> list[Column]:
        keys = [Column(self.columns[i][0], GENERAL, KIND_WIDTHS["text"]) for i in self.keys]
        return [*keys, Column(ORDERS, INTEGER_FORMAT, max(KIND_WIDTHS["int"], len(f"{self.rows:,}") + 2)),
                *demo_sheet_columns([self.columns[i] for i in self.summed], self.rows)]

    def summary_rows(self) -> list[list]:
        """One row per region (and product) that sold, in alphabetical order."""
        rows = []
        for key, (orders, *sums) in sorted(self.groups.items()):
            rows.append([*(key if isinstance(key, tuple) else (key,)), orders, *(s.value for s in sums)])
        return rows

    def summary_totals(self) -> list:
        orders = sum(group[0] for group in self.groups.values())
        return [TOTAL_LABEL, *[None] * (len(self.keys) - 1), orders, *(self.totals[i].value for i in self.summed)]


def _counted_rows(rows: Iterator[list], total: int, tally: DemoTally | None,
                  on_rows: ProgressCallback) -> Iterator[list]:
    """Pass the rows through in chunks: each chunk is tallied first, and on_rows hears after it is written."""
    done = 0
    while chunk := list(islice(rows, CHUNK_ROWS)):
        if tally is not None:
            tally.add(chunk)
        yield from chunk
        done += len(chunk)
        on_rows(done, total)


def _parse(params: dict) -> tuple[int, list[tuple[str, str]], int]:
    return int(params["rows"]), demo_columns(int(params["columns"])), int(params["seed"])


def demo_sheets(params: dict, on_rows: ProgressCallback) -> Iterator[Sheet]:
    """The workbook's sheets, lazily: the summary exists only once the writer has taken every row."""
    rows, columns, seed = _parse(params)
    tally = DemoTally(columns, rows)
    data = _counted_rows(demo_rows(rows, len(columns), seed), rows, tally, on_rows)
    yield Sheet(DATA_SHEET, demo_sheet_columns(columns, rows), data, lambda: [tally.totals_row()],
                row_count=rows + 2)
    if tally.keys:
        summary = tally.summary_rows()
        yield Sheet(SUMMARY_SHEET, tally.summary_columns(), summary, lambda: [tally.summary_totals()],
                    row_count=len(summary) + 2)


def build_demo_sheet(path: str, params: dict, on_rows: ProgressCallback, engine: str = "lean") -> int:
    """Write the demo workbook with the chosen xlsx engine; returns the number of sales rows."""
    xlsx_writer(engine)(path, demo_sheets(params, on_rows))
    return int(params["rows"])


def build_demo_csv(path: str, params: dict, on_rows: ProgressCallback) -> int:
    """Write the sales rows as CSV; returns their number."""
    rows, columns, seed = _parse(params)
    data = _counted_rows(demo_rows(rows, len(columns), seed), rows, None, on_rows)
    write_csv(path, Sheet(DATA_SHEET, demo_sheet_columns(columns), data))
    return rows
