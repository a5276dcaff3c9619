"""Seeded delivery data for the example: one Parquet file a day of orders, each with its courier
(an integer key), restaurant (a text key), distance, items, region, rain and how long it took.

    python examples/delivery/generate.py                  # 12 days into examples/delivery/data/landing
    python examples/delivery/generate.py --days 30 --orders 500 --landing /tmp/landing
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

FIRST_DAY = dt.datetime(2026, 5, 1)
COURIERS = np.arange(101, 141)
"""Forty couriers, about six deliveries each a day: every delivery has state from earlier ones."""
RESTAURANTS = np.array([f"r{i:02d}" for i in range(15)])
"""Fifteen restaurants: a couple of orders each in any two hours (the restaurant state's window)."""
TABLE = "deliveries"


def deliveries(rng: np.random.Generator, day: dt.datetime, n: int, couriers: np.ndarray = COURIERS,
               prefix: str = "o", restaurants: np.ndarray = RESTAURANTS) -> pa.Table:
    """``n`` orders placed on ``day``; ``order_ref`` is ``prefix`` and a number."""
    distance = rng.gamma(2.0, 1500.0, n)
    items = rng.integers(1, 8, n)
    region = rng.choice(["North", " south", "CITY", "", None], n, p=[0.3, 0.3, 0.3, 0.05, 0.05])
    raining = rng.random(n) < 0.2
    hours = rng.integers(8, 23, n)
    duration = 10 + distance / 250 + 2 * items + 8 * raining + np.where(hours >= 17, 6, 0) + rng.normal(0, 3, n)
    placed = [day + dt.timedelta(hours=int(h), minutes=int(m), seconds=int(s))
              for h, m, s in zip(hours, rng.integers(0, 60, n), rng.integers(0, 60, n))]
    return pa.table({
        "order_ref": [f"{prefix}{i:04d}" for i in range(n)],
        "placed_ts": pa.array(placed, pa.timestamp("us")),
        "courier_id": rng.choice(couriers, n).astype(np.int64),
        "restaurant_ref": rng.choice(restaurants, n).tolist(),
        "distance_m": distance,
        "item_count": items.astype(np.int64),
        "region_name": region.tolist(),
        "raining": raining,
        "duration_s": duration * 60,  # seconds: a target in the thousands
        # Landed, declared, read by no feature: not a request field (the request schema is what
        # the features read).
        "dispatch_note": rng.choice(["", "ring twice", "leave at door"], n).tolist(),
    })


def land(landing: Path, day: dt.datetime, table: pa.Table) -> Path:
    """Write ``table`` as ``day``'s partition: ``<landing>/deliveries/YYYY-MM-DD.parquet``."""
    path = landing / TABLE / f"{day.date()}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return path


def generate(landing: Path, days: int = 12, orders: int = 250, seed: int = 3) -> list[Path]:
    """``days`` seeded days of ``orders`` orders each, from ``FIRST_DAY``."""
    rng = np.random.default_rng(seed)
    return [land(landing, FIRST_DAY + dt.timedelta(days=d),
                 deliveries(rng, FIRST_DAY + dt.timedelta(days=d), orders, prefix=f"o{d:02d}"))
            for d in range(days)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="generate.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--landing", type=Path, default=Path(__file__).parent / "data" / "landing",
                        help="landing folder (default: examples/delivery/data/landing)")
    parser.add_argument("--days", type=int, default=12, help="days from 2026-05-01 (default 12)")
    parser.add_argument("--orders", type=int, default=250, help="orders a day (default 250)")
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args(argv)
    if args.days < 1 or args.orders < 1:
        parser.error("--days and --orders must be at least 1")
    paths = generate(args.landing, args.days, args.orders, args.seed)
    print(f"wrote {len(paths)} partitions to {args.landing / TABLE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
