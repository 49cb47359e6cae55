"""Rerun the numbers docs/results.md prints and say which still hold.

The validation command of the README (optional; CI does not run it):

    python benchmarks/validate.py            # the quick budget, table by table (~45 min)
    python benchmarks/validate.py --whole    # and Table 12 on the whole data (~1 h more)
    python benchmarks/validate.py --dry-run  # check every run and print its plan

Each check reruns a table with ``cnnfeatures reproduce`` (as docs/results.md says it was
run), reads the figure from the run's records and the figure docs/results.md prints, and
says "holds" (equal at the printed precision), "within its 95% interval" (the printed
figure lies in the bootstrap interval of the new measurement) or "differs". A run's
journal in the output folder (default ``validation/``) makes a second call resume; add
``--fresh`` to measure everything again. Exit status 1 when a figure differs.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
RESULTS = ROOT / "docs" / "results.md"
WEIGHTS = SHARED / "weights" / "vgg16_notop_imagenet.weights.h5"


@dataclass(frozen=True)
class Check:
    """One printed figure: the docs row it is in, a regex whose group is the figure, and
    the record (parameter values) that measures it."""

    table: str
    data: str
    row: str  # the start of the docs/results.md line
    figure: str
    record: dict = field(default_factory=dict)
    args: tuple = ()  # reproduce options beyond the shared ones
    metric: str = "accuracy"


def _quick_row(table: str, data: str) -> str:
    return f"| {table} | {data} |"


_GROUPS = {"chest_xray": ("--group-pattern", "chest_xray=chest_xray"),
           "malaria_cells": ("--group-pattern", "malaria_cells=malaria_cells")}

#: The quick budget, table by table (docs/results.md, its last section).
QUICK = [
    Check("1-4", "mini_scene", _quick_row("1-4", "mini_scene"), r"N=1: ([\d.]+)",
          {"layer": "block5_pool", "pooling": "mean", "scale": "1"}),
    Check("5-7", "mini_scene", _quick_row("5-7", "mini_scene"), r"k=64/128: ([\d.]+)",
          {"layer": "block5_pool", "k": "64"}),
    Check("5-7", "mini_scene", _quick_row("5-7", "mini_scene"), r"k=64/128: [\d.]+ / ([\d.]+)",
          {"layer": "block5_pool", "k": "128"}),
    Check("5-7", "mini_scene", _quick_row("5-7", "mini_scene"), r"pooled: ([\d.]+)",
          {"layer": "block5_pool", "k": "pooled"}),
    Check("8-9", "chest_xray", _quick_row("8-9", "chest_xray"), r"`blocks` frozen: ([\d.]+)",
          {"frozen": "blocks"}),
    Check("8-9", "chest_xray", _quick_row("8-9", "chest_xray"), r"Table 9 row: ([\d.]+)",
          {"frozen": "blocks, fc1"}),
    Check("10", "mini_scene", _quick_row("10", "mini_scene"), r"hybrid ([\d.]+)",
          {"method": "hybrid SepConv CNN"}),
    Check("10", "mini_scene", _quick_row("10", "mini_scene"),
          r"fine-tuned \(frozen base\) ([\d.]+)", {"method": "fine-tuned VGG (frozen base)"}),
    Check("11", "malaria_cells", _quick_row("11", "malaria_cells"), r"([\d.]+) without",
          {"method": "without augmentation"}),
    Check("11", "malaria_cells", _quick_row("11", "malaria_cells"),
          r"([\d.]+) with augmentation", {"method": "with augmentation (x3)"}),
    Check("11", "malaria_cells", _quick_row("11", "malaria_cells"), r"; CLAHE ([\d.]+)",
          {"method": "CLAHE"}),
    Check("11", "malaria_cells", _quick_row("11", "malaria_cells"), r"raw \+ CLAHE ([\d.]+)",
          {"method": "raw + CLAHE"}),
    Check("12", "mini_scene", _quick_row("12", "mini_scene"), r"balanced: ([\d.]+)"),
]

_WHOLE_ARGS = ("--max-train", "0", "--max-test", "0", "--scales", "0", "1",
               "--precision", "bfloat16")

#: Table 12 on the whole data (docs/results.md, its first table), one run per dataset.
WHOLE = [
    Check("12", name, f"| {name} |", r"\*\*([\d.]+)\*\*", {"dataset": name}, _WHOLE_ARGS)
    for name in ("mini_scene", "malaria_cells", "ham10000_7class", "chest_xray")
]


def printed_figure(check: Check, text: str) -> float:
    """The figure docs/results.md prints for ``check`` (the first line of its row)."""
    for line in text.splitlines():
        if line.startswith(check.row):
            found = re.search(check.figure, line)
            if found:
                return float(found.group(1))
    raise ValueError(f"docs/results.md: no line starting {check.row!r} matches "
                     f"{check.figure!r}: the check and the page disagree")


def reproduce_args(check: Check, output: Path, *, fresh: bool, dry_run: bool) -> list[str]:
    args = ["reproduce", check.table, str(SHARED / "data" / check.data),
            "--backbone", "vgg16", "--weights", str(WEIGHTS), "--budget", "quick",
            *_GROUPS.get(check.data, ()), *check.args, "-o", str(output)]
    return args + ["--fresh"] * fresh + ["--dry-run"] * dry_run


def measured(check: Check, output: Path) -> dict:
    """The record of ``check``'s run in the run's records_<table>.csv."""
    import pandas as pd

    records = pd.read_csv(output / f"records_{check.table}.csv", dtype=str)
    wanted = {"dataset": check.data, **check.record}
    rows = records[(records[list(wanted)] == pd.Series(wanted)).all(axis=1)]
    if len(rows) != 1:
        raise ValueError(f"{output}/records_{check.table}.csv: {len(rows)} records with "
                         f"{wanted}, expected one")
    row = rows.iloc[0]
    return {key: float(row[key]) for key in (check.metric, f"{check.metric}_low",
                                             f"{check.metric}_high")}


def verdict(printed: float, record: dict, metric: str) -> str:
    value = record[metric]
    if round(value, 3) == printed:
        return "holds"
    if record[f"{metric}_low"] <= printed <= record[f"{metric}_high"]:
        return "within its 95% interval"
    return "differs"


def main(argv=None) -> int:
    from cnnfeatures.cli import main as cli

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--whole", action="store_true",
                        help="also Table 12 on the whole data of the four datasets")
    parser.add_argument("--tables", nargs="+", help="only these tables (e.g. 1-4 12)")
    parser.add_argument("--dry-run", action="store_true",
                        help="check every run and print its plan; nothing is run")
    parser.add_argument("--fresh", action="store_true", help="measure every run again")
    parser.add_argument("-o", "--output", default="validation", help="output folder")
    args = parser.parse_args(argv)
    text = RESULTS.read_text(encoding="utf-8")
    checks = [(c, "quick") for c in QUICK] + [(c, "whole") for c in WHOLE] * args.whole
    checks = [(c, part) for c, part in checks if not args.tables or c.table in args.tables]
    done, rows = set(), []
    for check, part in checks:
        output = Path(args.output) / part / check.table.replace("-", "_")
        if part == "whole":
            output = output / check.data
        key = (part, check.table, check.data if part == "whole" else "")
        if key not in done:  # one run per table (and dataset, on the whole data)
            done.add(key)
            status = cli(reproduce_args(check, output, fresh=args.fresh,
                                        dry_run=args.dry_run))
            if status != 0:
                return status
        printed = printed_figure(check, text)
        if args.dry_run:
            continue
        record = measured(check, output)
        rows.append((check, printed, record, verdict(printed, record, check.metric)))
    if args.dry_run:
        print(f"validation plan: {len(checks)} figures of docs/results.md")
        return 0
    print("\n| table | data | run | docs | measured [95% CI] | verdict |")
    print("|---|---|---|---|---|---|")
    for check, printed, record, said in rows:
        m = check.metric
        run = ", ".join(f"{k}={v}" for k, v in check.record.items()) or "-"
        print(f"| {check.table} | {check.data} | {run} | {printed:.3f} | {record[m]:.3f} "
              f"[{record[f'{m}_low']:.3f}, {record[f'{m}_high']:.3f}] | {said} |")
    held = sum(said != "differs" for *_, said in rows)
    print(f"\n{held} of {len(rows)} figures hold (equal, or inside the new interval)")
    return 0 if held == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
