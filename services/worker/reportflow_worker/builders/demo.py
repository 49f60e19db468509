"""The `demo` report: a deterministic sales-like sheet (same params, same cells), streamed row by row."""
from __future__ import annotations

import random
from datetime import date, timedelta

from openpyxl import Workbook

from . import CHUNK_ROWS, ProgressCallback

REGIONS = ("North", "South", "East", "West", "Central")
PRODUCTS = ("Widget", "Gadget", "Gizmo", "Doohickey", "Sprocket", "Flange", "Bracket", "Valve")
BASE_DATE = date(2024, 1, 1)
# name, kind: the first eight columns; more columns add metrics alternating int and float
BASE_COLUMNS = (("date", "date"), ("region", "text"), ("product", "text"), ("units", "int"),
                ("unit_price", "float"), ("revenue", "float"), ("discount", "float"), ("net_revenue", "float"))
TOTAL_LABEL = "TOTAL"


def demo_columns(columns: int) -> list[tuple[str, str]]:
    extra = [(f"metric_{i}", "int" if i % 2 else "float") for i in range(1, columns - len(BASE_COLUMNS) + 1)]
    return list(BASE_COLUMNS + tuple(extra))[:columns]


def demo_rows(rows: int, columns: int, seed: int):
    """Yield each data row; the values depend only on (rows, columns, seed)."""
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


def demo_totals(columns: list[tuple[str, str]], sums: list[float]) -> list:
    """The totals row: a label in the first column, the sum under each numeric column."""
    row = []
    for i, (_name, kind) in enumerate(columns):
        if i == 0:
            row.append(TOTAL_LABEL)
        elif kind == "int":
            row.append(int(sums[i]))
        elif kind == "float":
            row.append(round(sums[i], 2))
        else:
            row.append(None)
    return row


def build_demo_sheet(path: str, params: dict, on_rows: ProgressCallback) -> int:
    rows, columns = int(params["rows"]), demo_columns(int(params["columns"]))
    wb = Workbook(write_only=True)  # rows go to disk as they are appended: memory stays flat
    ws = wb.create_sheet("demo")
    ws.append([name for name, _kind in columns])
    numeric = [i for i, (_n, kind) in enumerate(columns) if kind in ("int", "float")]
    sums = [0] * len(columns)
    for n, row in enumerate(demo_rows(rows, len(columns), int(params["seed"])), start=1):
        ws.append(row)
        for i in numeric:
            sums[i] += row[i]
        if n % CHUNK_ROWS == 0:
            on_rows(n, rows)
    ws.append(demo_totals(columns, sums))
    on_rows(rows, rows)
    wb.save(path)
    return rows
