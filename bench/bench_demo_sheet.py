"""Benchmark the `demo` report builder: every xlsx engine and peer on the same workbook, interleaved, in one run.

Why: issue 14 asks for >= 4x today's rows/s at 100k rows x 10 columns with memory still flat (<= 60 MiB
peak at 1M rows), the engine chosen on evidence. Each build runs in a fresh child process, so each peak
RSS belongs to that build alone; the modes run in turn, round after round (the order rotating each
round), so a change in the machine's load falls on every mode alike; figures are medians over the rounds.
Speed is CPU seconds of the child (user + system), which other work on a shared machine slows far less
than wall time; wall seconds are printed too. Ratios are taken within each round, then their median.

    .venv/bin/python bench/bench_demo_sheet.py                  # 100k x 10, 3 rounds, then 1M rows (~10 min)
    .venv/bin/python bench/bench_demo_sheet.py --quick          # 1 round, no 1M-row runs (~1 min)
    .venv/bin/python bench/bench_demo_sheet.py --rows 20000 --rounds 5 --big-rows 0

Figures only: nothing here asserts a timing. The peers (XlsxWriter, PyExcelerate, rustpy-xlsxwriter) come
from requirements/bench.txt (`make bench` installs them); a missing one is reported and skipped.
"""
from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time

MIB = 1024 * 1024
COLUMNS, SEED = 10, 0
BASELINE = "openpyxl (today)"
MODES = {  # name: what runs in the child
    BASELINE: "the builder before issue 14 (3e79d9d): openpyxl write-only, plain values, one sheet",
    "openpyxl": "this builder, XLSX_ENGINE=openpyxl: the whole workbook on openpyxl write-only",
    "lean": "this builder, XLSX_ENGINE=lean (the default): the whole workbook on reportflow's own writer",
    "xlsxwriter": "the whole workbook on XlsxWriter, constant_memory mode",
    "pyexcelerate": "the whole workbook on PyExcelerate",
    "rustpy-xlsxwriter": "the whole workbook on rustpy-xlsxwriter (Rust), its constant-memory mode",
    "csv": "this builder, params.format=csv: the csv module (header and rows only)",
    "rows only": "generating and tallying the rows (totals, summary), writing nothing: the floor",
}
PEER_PACKAGES = {"xlsxwriter": "xlsxwriter", "pyexcelerate": "pyexcelerate",
                 "rustpy-xlsxwriter": "rustpy-xlsxwriter"}
BIG_MODES = (BASELINE, "lean", "csv", "xlsxwriter", "rustpy-xlsxwriter")  # flat-memory candidates at 1M rows
VERSIONED = ("openpyxl", "lxml", "xlsxwriter", "pyexcelerate", "rustpy-xlsxwriter")


def peak_rss_mib() -> float:
    """This process's peak resident set size so far.

    On Linux VmHWM, not ru_maxrss: the kernel carries ru_maxrss over an exec, so a child would report its
    parent's peak when that was higher.
    """
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024
    except (OSError, StopIteration):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
        return peak / MIB if sys.platform == "darwin" else peak / 1024


def run_child(mode: str, rows: int, path: str) -> None:
    """In the child: import what the mode needs, build once, print the figures as one JSON line."""
    tempfile.tempdir = os.path.dirname(path)  # openpyxl's and XlsxWriter's scratch files go in the run's folder
    params = {"rows": rows, "columns": COLUMNS, "seed": SEED}
    from reportflow_worker.builders.demo import build_demo_csv, build_demo_sheet, demo_sheets

    def quiet(done, total):
        pass

    # every library a mode uses is imported before the baseline RSS, as it is in a worker process
    if mode == BASELINE:
        import openpyxl  # noqa: F401
        from sheet_writers import build_today
        build = lambda: build_today(path, params, quiet)  # noqa: E731
    elif mode in ("openpyxl", "lean"):
        from reportflow_worker.builders import xlsx_writer
        xlsx_writer(mode)
        build = lambda: build_demo_sheet(path, params, quiet, mode)  # noqa: E731
    elif mode == "csv":
        build = lambda: build_demo_csv(path, params, quiet)  # noqa: E731
    elif mode == "rows only":
        def build():
            for sheet in demo_sheets(params, quiet):
                for _row in sheet.rows:
                    pass
                sheet.footer()
            open(path, "wb").close()
    else:
        import importlib

        import sheet_writers
        importlib.import_module(PEER_PACKAGES[mode].replace("-", "_"))
        build = lambda: sheet_writers.write_workbook(mode, path, demo_sheets(params, quiet), params)  # noqa: E731
    baseline = peak_rss_mib()  # after the imports, before any row is built
    cpu, wall = time.process_time(), time.perf_counter()
    build()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    print(json.dumps({"cpu": cpu, "wall": wall, "baseline_mib": baseline, "peak_mib": peak_rss_mib(),
                      "file_bytes": os.path.getsize(path)}))


def measure(mode: str, rows: int, folder: str) -> dict:
    """Run one build in a fresh interpreter and return its figures."""
    path = os.path.join(folder, f"{mode.replace(' ', '-')}-{rows}.{'csv' if mode == 'csv' else 'xlsx'}")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [os.path.dirname(__file__),
                                                                     os.environ.get("PYTHONPATH")]))}
    out = subprocess.run([sys.executable, __file__, "--child", mode, str(rows), path], env=env,
                         check=True, stdout=subprocess.PIPE, text=True).stdout  # stderr shows through
    os.remove(path)
    return {"mode": mode, "rows": rows, **json.loads(out.splitlines()[-1])}


def same_cells(folder: str) -> list[str]:
    """Every writer's 300-row workbook read back with openpyxl, against lean's: what differs, per peer."""
    from openpyxl import load_workbook
    from sheet_writers import LIMITS, write_workbook

    from reportflow_worker.builders.demo import build_demo_sheet, demo_sheets

    def cells(path):
        wb = load_workbook(path, read_only=True)
        try:
            return {name: [tuple(v for v in row) for row in wb[name].iter_rows(values_only=True)]
                    for name in wb.sheetnames}
        finally:
            wb.close()

    def strip(sheets):  # without the empty cells a read-only reader pads rows with
        return {n: [tuple(_rstrip(r)) for r in rows] for n, rows in sheets.items()}

    params = {"rows": 300, "columns": COLUMNS, "seed": SEED}
    lines, reference = [], None
    for mode in ("lean", "openpyxl", *PEER_PACKAGES):
        path = os.path.join(folder, f"check-{mode}.xlsx")
        try:
            if mode in ("lean", "openpyxl"):
                build_demo_sheet(path, params, lambda d, t: None, mode)
            else:
                write_workbook(mode, path, demo_sheets(params, lambda d, t: None), params)
        except ImportError as exc:
            lines.append(f"  {mode:<18} not installed ({exc.name}); `make bench` installs requirements/bench.txt")
            continue
        got = strip(cells(path))
        reference = reference or got
        typed = {n: [[(type(v).__name__, v) for v in r] for r in rows] for n, rows in got.items()}
        ref_typed = {n: [[(type(v).__name__, v) for v in r] for r in rows] for n, rows in reference.items()}
        verdict = ("same cells and types as lean" if typed == ref_typed else
                   "same values as lean, other types" if got == reference else "DIFFERENT cells from lean")
        note = LIMITS.get(mode, "")
        lines.append(f"  {mode:<18} {verdict}{'; ' + note if note else ''}")
    return lines


def _rstrip(row):
    row = list(row)
    while row and row[-1] in (None, ""):
        row.pop()
    return row


def installed(mode: str) -> bool:
    package = PEER_PACKAGES.get(mode)
    if package is None:
        return True
    try:
        importlib.metadata.version(package)
        return True
    except importlib.metadata.PackageNotFoundError:
        return False


def conditions(args) -> str:
    versions = []
    for name in VERSIONED:
        try:
            versions.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            versions.append(f"{name} not installed")
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "?")
    except OSError:
        cpu = platform.processor() or "?"
    return (f"CPUs: {os.cpu_count()} x {cpu}   load average (1/5/15 min): {_load()}\n"
            f"Python {platform.python_version()} on {platform.platform()}\n{'   '.join(versions)}\n"
            f"demo report: {args.rows:,} rows x {COLUMNS} columns, seed {SEED}; {args.rounds} interleaved "
            f"round(s), each build in a fresh child process; rows/s from the child's CPU seconds (median)")


def _load() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


def median_ratio(results: list[dict], mode: str, peer: str) -> float | None:
    """Median over the rounds of peer CPU seconds / mode CPU seconds, taken within each round."""
    by_round: dict[int, dict[str, float]] = {}
    for r in results:
        by_round.setdefault(r["round"], {})[r["mode"]] = r["cpu"]
    ratios = [times[peer] / times[mode] for times in by_round.values() if mode in times and peer in times]
    return statistics.median(ratios) if ratios else None


def table(results: list[dict], rows: int) -> str:
    modes = [m for m in MODES if any(r["mode"] == m for r in results)]
    head = (f"| mode | rows/s (CPU) | rows/s (wall) | x {BASELINE} | x xlsxwriter | x csv | peak RSS MiB "
            f"| growth MiB | file MiB |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    lines = [head]
    for mode in modes:
        runs = [r for r in results if r["mode"] == mode]
        cpu, wall = statistics.median(r["cpu"] for r in runs), statistics.median(r["wall"] for r in runs)
        peak = max(r["peak_mib"] for r in runs)
        growth = max(r["peak_mib"] - r["baseline_mib"] for r in runs)
        ratios = [median_ratio(results, mode, peer) for peer in (BASELINE, "xlsxwriter", "csv")]
        cells = " | ".join("" if x is None else f"{x:.2f}" for x in ratios)
        lines.append(f"| {mode} | {rows / cpu:,.0f} | {rows / wall:,.0f} | {cells} | {peak:.1f} | {growth:.1f} "
                     f"| {runs[0]['file_bytes'] / MIB:.2f} |")
    return "\n".join(lines)


def big_table(results: list[dict]) -> str:
    lines = ["| mode | rows | CPU s | wall s | rows/s (CPU) | peak RSS MiB | growth MiB | file MiB |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        lines.append(f"| {r['mode']} | {r['rows']:,} | {r['cpu']:.1f} | {r['wall']:.1f} | {r['rows'] / r['cpu']:,.0f} "
                     f"| {r['peak_mib']:.1f} | {r['peak_mib'] - r['baseline_mib']:.1f} | {r['file_bytes'] / MIB:.1f} |")
    return "\n".join(lines)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000, help="rows of the interleaved rounds")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (medians over them)")
    parser.add_argument("--big-rows", type=int, default=1_000_000,
                        help=f"rows of one more run of {', '.join(BIG_MODES)} for the memory bound (0: none)")
    parser.add_argument("--quick", action="store_true", help="one round and no big run")
    parser.add_argument("--child", nargs=3, metavar=("MODE", "ROWS", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.big_rows = 1, 0
    return args


def main() -> None:
    args = parse_args()
    if args.child:
        mode, rows, path = args.child
        return run_child(mode, int(rows), path)
    sys.path.insert(0, os.path.dirname(__file__))
    print(conditions(args), "", "What each mode runs:", *(f"  {m:<18} {d}" for m, d in MODES.items()), sep="\n")
    modes = [m for m in MODES if installed(m)]
    skipped = [m for m in MODES if m not in modes]
    if skipped:
        print(f"Not installed, skipped: {', '.join(skipped)} (`make bench` installs requirements/bench.txt)")
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-demo-") as folder:
        print("\nThe same workbook? (300 rows, read back with openpyxl)", *same_cells(folder), sep="\n")
        results = []
        for round_no in range(args.rounds):
            order = modes[round_no % len(modes):] + modes[:round_no % len(modes)]
            print(f"\nround {round_no + 1}/{args.rounds} ({args.rows:,} rows):", end="", flush=True)
            for mode in order:
                results.append({**measure(mode, args.rows, folder), "round": round_no})
                print(f"  {mode} {results[-1]['cpu']:.2f}s", end="", flush=True)
        print(f"\n\n{args.rows:,} rows x {COLUMNS} columns (medians of {args.rounds} round(s); ratios: how many times "
              f"faster than the column's mode, in CPU time)\n")
        print(table(results, args.rows))
        if args.big_rows:
            big = [measure(mode, args.big_rows, folder) for mode in BIG_MODES if mode in modes]
            print(f"\n{args.big_rows:,} rows x {COLUMNS} columns, one run each (memory bound: <= 60 MiB peak)\n")
            print(big_table(big))
    print(f"\nLoad average at the end: {_load()}. Whole benchmark: {time.perf_counter() - start:.0f} s wall.")


if __name__ == "__main__":
    main()
