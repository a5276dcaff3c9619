import dataclasses
import datetime as dt
import hashlib
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from orchestration.cli import main
from orchestration.demo_data import DemoDataOptions, Fault, generate


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


FAULT_DAY = dt.date(2026, 1, 3)


def _categories(table: pa.Table) -> dict[str, int]:
    values = pc.utf8_lower(pc.utf8_trim_whitespace(table.column("merchant_category"))).to_pylist()
    return {v: values.count(v) for v in set(values)}


def _fault(tmp_path: Path, kind: str) -> tuple[list[Path], list[Path]]:
    opts = DemoDataOptions(rows=4000, days=4, seed=5)
    clean = generate(tmp_path / "clean", opts)
    faulty = generate(tmp_path / kind, dataclasses.replace(opts, fault=Fault(kind, FAULT_DAY)))
    return clean, faulty


@pytest.mark.parametrize(
    ("kind", "check"),
    [
        ("dropped-column", lambda t, c: "country_code" not in t.column_names),
        ("renamed-column", lambda t, c: "merchant_cat" in t.column_names and "merchant_category" not in t.column_names),
        ("type-change", lambda t, c: t.schema.field("amount").type == pa.string()),
        ("null-explosion", lambda t, c: 0.3 < t.column("merchant_category").null_count / t.num_rows < 0.5),
        ("label-collapse", lambda t, c: pc.sum(t.column("is_fraud")).as_py() <= pc.sum(c.column("is_fraud")).as_py() / 10),
        ("unit-change", lambda t, c: pc.sum(t.column("amount")).as_py() == pytest.approx(100 * pc.sum(c.column("amount")).as_py())),
        ("empty-day", lambda t, c: t.num_rows == 0 and t.schema == c.schema),
        ("shifted-local-time", lambda t, c: pc.all(pc.equal(pc.subtract(c.column("txn_ts"), t.column("txn_ts")),
                                                            pa.scalar(dt.timedelta(hours=5)))).as_py()),
        ("user-id-format", lambda t, c: t.column("user_id")[0].as_py() == str(int(c.column("user_id")[0].as_py()[2:]))),
        ("user-id-trailing-space", lambda t, c: t.column("user_id")[0].as_py() == c.column("user_id")[0].as_py() + " "),
        ("alpha3-country", lambda t, c: "USA" in t.column("country_code").to_pylist()
                                        and "US" not in t.column("country_code").to_pylist()),
        ("unseen-currency", lambda t, c: set(t.column("currency_code").drop_null().to_pylist()) == {"XXX"}),
        ("swapped-categories", lambda t, c: _categories(t)["grocery"] == _categories(c)["retail"] > 0
                                            and _categories(t)["retail"] == _categories(c)["grocery"]),
    ],
)
def test_each_fault_breaks_only_its_day(tmp_path: Path, kind: str, check) -> None:
    clean, faulty = _fault(tmp_path, kind)
    day = [p.name for p in faulty].index(f"{FAULT_DAY}.parquet")
    assert check(pq.read_table(faulty[day]), pq.read_table(clean[day]))
    others = [i for i in range(len(clean)) if i != day]
    assert _digests([faulty[i] for i in others]) == _digests([clean[i] for i in others])


def test_corrupt_late_and_duplicate_faults(tmp_path: Path) -> None:
    clean, corrupt = _fault(tmp_path, "corrupt-file")
    with pytest.raises(pa.ArrowInvalid):
        pq.read_metadata(corrupt[2])
    _, page = _fault(tmp_path, "corrupt-page")
    assert pq.read_metadata(page[2]).num_rows == pq.read_metadata(clean[2]).num_rows  # the footer is intact
    with pytest.raises(OSError, match="CRC checksum verification failed"):
        pq.ParquetFile(page[2], page_checksum_verification=True).read()
    _, late = _fault(tmp_path, "late-partition")
    assert late[2] == tmp_path / "late-partition" / "late" / "transactions" / "2026-01-03.parquet"
    assert not (tmp_path / "late-partition" / "transactions" / "2026-01-03.parquet").exists()
    assert _digests([late[2]]) == _digests([clean[2]])
    _, duplicate = _fault(tmp_path, "duplicate-partition")
    resent = pq.read_table(duplicate[3]).column("txn_id").to_pylist()
    day = pq.read_table(clean[2]).column("txn_id").to_pylist()
    assert set(day) <= set(resent) and len(resent) == len(day) + pq.read_metadata(clean[3]).num_rows


def test_fault_options_are_checked() -> None:
    with pytest.raises(ValueError, match="unknown fault 'typo'"):
        Fault("typo", FAULT_DAY)
    with pytest.raises(ValueError, match="fault day 2026-02-01 is outside the generated days"):
        DemoDataOptions(days=3, fault=Fault("empty-day", dt.date(2026, 2, 1)))


def test_cli_injects_a_fault_on_the_chosen_day(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["demo-data", "--landing", str(tmp_path), "--rows", "2000", "--days", "3",
                 "--fault", "unit-change", "--fault-day", "2026-01-02"])
    assert code == 0 and "injected fault unit-change on 2026-01-02" in capsys.readouterr().out
    assert main(["demo-data", "--landing", str(tmp_path), "--rows", "2000", "--days", "3", "--fault-day", "2026-01-02"]) == 2
    assert "--fault-day needs --fault KIND" in capsys.readouterr().err
