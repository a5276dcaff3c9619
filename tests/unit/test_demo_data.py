import hashlib
from pathlib import Path

import duckdb
import pytest

from orchestration.demo_data import DemoDataOptions, generate


def _digests(paths: list[Path]) -> list[str]:
    return [hashlib.sha256(p.read_bytes()).hexdigest() for p in paths]


def test_same_seed_gives_same_bytes(tmp_path: Path) -> None:
    opts = DemoDataOptions(rows=5000, days=4, seed=3)
    a = generate(tmp_path / "a", opts)
    b = generate(tmp_path / "b", opts)
    assert [p.name for p in a] == ["2026-01-01.parquet", "2026-01-02.parquet", "2026-01-03.parquet", "2026-01-04.parquet"]
    assert _digests(a) == _digests(b)


def test_other_seed_gives_other_data(tmp_path: Path) -> None:
    a = generate(tmp_path / "a", DemoDataOptions(rows=5000, days=2, seed=3))
    b = generate(tmp_path / "b", DemoDataOptions(rows=5000, days=2, seed=4))
    assert _digests(a) != _digests(b)


def test_fraud_follows_learnable_patterns(tmp_path: Path) -> None:
    generate(tmp_path, DemoDataOptions(rows=60_000, days=10, seed=1))
    rows = duckdb.sql(f"""
        select is_fraud, count(*) n, avg((hour(txn_ts) < 6)::int) night, median(amount) amount,
               avg((channel ilike 'online')::int) online
        from read_parquet('{tmp_path}/transactions/*.parquet') group by 1 order by 1
    """).fetchall()
    (_, n_legit, night_legit, amount_legit, online_legit), (_, n_fraud, night_fraud, amount_fraud, online_fraud) = rows
    assert 0.004 < n_fraud / (n_legit + n_fraud) < 0.02
    assert night_fraud > 4 * night_legit
    assert amount_fraud > 2 * amount_legit
    assert online_fraud > 1.5 * online_legit


def test_row_and_day_knobs(tmp_path: Path) -> None:
    paths = generate(tmp_path, DemoDataOptions(rows=3000, days=7, seed=1))
    assert len(paths) == 7
    (count,) = duckdb.sql(f"select count(distinct txn_id) from read_parquet('{tmp_path}/transactions/*.parquet')").fetchone()
    assert count == 3000


@pytest.mark.parametrize("kwargs", [{"rows": 10}, {"days": 0}, {"fraud_rate": 0.9}])
def test_bad_options_are_named(kwargs: dict) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        DemoDataOptions(**kwargs)
