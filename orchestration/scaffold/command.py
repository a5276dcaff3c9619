"""``orchestrate.py init``: its arguments and what it prints."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from orchestration.scaffold.errors import ScaffoldError
from orchestration.scaffold.inference import TASKS, InitOptions, infer
from orchestration.scaffold.writer import next_steps, write

HELP = """\
Write a working dbt project and pipeline config from a landing folder, ready to run with zero
edits: the source (types inferred from the files), a staging model and its cleanup macro, a
features mart with default features per column type and its fitted statistics, the serving
macro, contracts and a unit-test stub. The folder is the table's: daily files
(YYYY-MM-DD.parquet or YYYY-MM-DD.csv) or hive-style day folders (date=YYYY-MM-DD/*.parquet|csv);
its name becomes the table's. Without --timestamp the only timestamp column is the event time,
or, with none, each row is dated by its partition's day. Without --key, the key is a hash of the
request fields. See docs/bring-your-own-data.md."""


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("init", help="scaffold a dbt project and pipeline config from a landing folder",
                       description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--landing", type=Path, required=True, metavar="PATH",
                   help="the table's landing folder, e.g. data/landing/orders (its name is the table's)")
    p.add_argument("--label", required=True, metavar="COL", help="landing column to predict")
    p.add_argument("--timestamp", metavar="COL",
                   help="column saying when each event happened (default: the only timestamp column; none: the "
                        "partition's day)")
    p.add_argument("--key", metavar="COL", help="column identifying each event, text or integer (default: an md5 of "
                                                "the request fields)")
    p.add_argument("--task", choices=TASKS, help="default: binary for boolean or 0/1 labels, multiclass for text "
                                                 "or up to 20 integer classes, else regression")
    p.add_argument("--out", type=Path, metavar="DIR",
                   help="folder for dbt_project/ and pipeline.yml (default: ./<table>)")
    p.add_argument("--force", action="store_true", help="overwrite files already in --out")


def main(args: argparse.Namespace) -> int:
    out = args.out if args.out is not None else Path(args.landing.resolve().name)
    options = InitOptions(landing=args.landing, label=args.label, timestamp=args.timestamp, key=args.key,
                          task=args.task, out=out, force=args.force)
    try:
        schema = infer(options)
        plan, _ = write(options, schema)
    except ScaffoldError as exc:
        print(f"orchestrate init: {exc}", file=sys.stderr)
        return 2
    print(next_steps(plan, out), flush=True)
    return 0
