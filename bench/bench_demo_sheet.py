"""Benchmark the worker's `demo` report builder: write-only (streaming) openpyxl vs a naive in-memory Workbook.

Why: build_demo_sheet uses Workbook(write_only=True) so a worker's memory stays flat however many rows a
job asks for (the API allows up to 1,000,000). This prints the evidence: for each row count, the builder and
a naive baseline (the same rows and totals, written with a normal Workbook that keeps every cell in memory
until save) each run in a fresh child process, so each peak RSS belongs to that run alone.

    .venv/bin/python bench/bench_demo_sheet.py [--rows 10000,100000,300000] [--quick]

Figures only: nothing here asserts a timing.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time

import openpyxl
from openpyxl import Workbook

from reportflow_common.contracts import DEMO_DEFAULTS
from reportflow_worker.builders.demo import build_demo_sheet, demo_columns, demo_rows, demo_totals

COLUMNS = 8
SEED = DEMO_DEFAULTS["seed"]
STREAM_ONLY_ROWS = 1_000_000  # streaming only, added unless --quick
NAIVE_MAX_ROWS = 300_000  # above this the naive build would need gigabytes, so it is skipped
MIB = 1024 * 1024


def build_naive_sheet(path: str, params: dict, on_rows) -> int:
    """The baseline: build_demo_sheet's header, rows and totals row, but in a normal Workbook (all cells in RAM)."""
    rows, columns = int(params["rows"]), demo_columns(int(params["columns"]))
    wb = Workbook()
    ws = wb.active
    ws.title = "demo"
    ws.append([name for name, _kind in columns])
    numeric = [i for i, (_n, kind) in enumerate(columns) if kind in ("int", "float")]
    sums = [0] * len(columns)
    for row in demo_rows(rows, len(columns), int(params["seed"])):
        ws.append(row)
        for i in numeric:
            sums[i] += row[i]
    ws.append(demo_totals(columns, sums))
    on_rows(rows, rows)
    wb.save(path)
    return rows


BUILDERS = {"streaming": build_demo_sheet, "naive": build_naive_sheet}


def peak_rss_mib() -> float:
    """This process's peak resident set size so far (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / MIB if sys.platform == "darwin" else peak / 1024


def run_child(mode: str, rows: int, path: str) -> None:
    """In the child: build one sheet and print its figures as one JSON line."""
    tempfile.tempdir = os.path.dirname(path)  # write-only mode's scratch files go in the run's folder
    baseline = peak_rss_mib()  # after the imports above, before any row is built
    start = time.perf_counter()
    BUILDERS[mode](path, {"rows": rows, "columns": COLUMNS, "seed": SEED}, lambda done, total: None)
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "baseline_mib": baseline, "peak_mib": peak_rss_mib(),
                      "file_bytes": os.path.getsize(path)}))


def measure(mode: str, rows: int, folder: str) -> dict:
    """Run one build in a fresh interpreter and return its figures."""
    path = os.path.join(folder, f"{mode}-{rows}.xlsx")
    out = subprocess.run([sys.executable, __file__, "--child", mode, str(rows), path],
                         check=True, stdout=subprocess.PIPE, text=True).stdout  # stderr shows through
    os.remove(path)
    return {"mode": mode, "rows": rows, **json.loads(out.splitlines()[-1])}


def conditions() -> str:
    try:
        from lxml import etree
        lxml_version = etree.__version__
    except ImportError:
        lxml_version = "not installed"
    return (f"CPUs: {os.cpu_count()}   Python: {platform.python_version()}   openpyxl: {openpyxl.__version__} "
            f"(uses lxml: {openpyxl.LXML})   lxml: {lxml_version}\nPlatform: {platform.platform()}   "
            f"columns: {COLUMNS}   seed: {SEED}   each run in a fresh child process")


HEADER = (f"{'mode':<10} {'rows':>10} {'seconds':>8} {'rows/s':>9} {'base RSS':>9} {'peak RSS':>9} "
          f"{'growth':>8} {'file':>8}\n{'':<10} {'':>10} {'':>8} {'':>9} {'MiB':>9} {'MiB':>9} {'MiB':>8} {'MiB':>8}")


def format_row(r: dict) -> str:
    return (f"{r['mode']:<10} {r['rows']:>10,} {r['seconds']:>8.2f} {r['rows'] / r['seconds']:>9,.0f} "
            f"{r['baseline_mib']:>9.1f} {r['peak_mib']:>9.1f} {r['peak_mib'] - r['baseline_mib']:>8.1f} "
            f"{r['file_bytes'] / MIB:>8.2f}")


def comparison(results: list[dict]) -> str:
    """One line: streaming vs naive peak RSS at the largest row count where both ran."""
    by = {(r["mode"], r["rows"]): r for r in results}
    both = [n for (mode, n) in by if mode == "naive" and ("streaming", n) in by]
    if not both:
        return "No row count ran in both modes."
    n = max(both)
    s, v = by["streaming", n], by["naive", n]
    return (f"At {n:,} rows: streaming peak RSS {s['peak_mib']:.1f} MiB vs naive {v['peak_mib']:.1f} MiB "
            f"({v['peak_mib'] / s['peak_mib']:.1f}x); growth over baseline {s['peak_mib'] - s['baseline_mib']:.1f} "
            f"vs {v['peak_mib'] - v['baseline_mib']:.1f} MiB.")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", default="10000,100000,300000",
                        help=f"comma-separated row counts, run in both modes (naive only up to {NAIVE_MAX_ROWS:,})")
    parser.add_argument("--quick", action="store_true", help=f"skip the streaming-only {STREAM_ONLY_ROWS:,}-row run")
    parser.add_argument("--child", nargs=3, metavar=("MODE", "ROWS", "PATH"), help=argparse.SUPPRESS)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.child:
        mode, rows, path = args.child
        return run_child(mode, int(rows), path)
    sizes = {int(n.replace("_", "")) for n in args.rows.split(",")}
    if not args.quick:
        sizes.add(STREAM_ONLY_ROWS)
    print(conditions(), "", HEADER, sep="\n")
    results, start = [], time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-demo-") as folder:
        for rows in sorted(sizes):
            for mode in ("streaming", "naive"):
                if mode == "naive" and rows > NAIVE_MAX_ROWS:
                    print(f"{mode:<10} {rows:>10,}   skipped (above {NAIVE_MAX_ROWS:,} rows)")
                    continue
                results.append(measure(mode, rows, folder))
                print(format_row(results[-1]), flush=True)
    print(f"\n{comparison(results)}\nWhole benchmark: {time.perf_counter() - start:.1f} s wall.")


if __name__ == "__main__":
    main()
