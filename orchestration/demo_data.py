"""Seeded generator of realistic card transactions, written as daily Parquet partitions.

The landing layout is ``<landing>/transactions/YYYY-MM-DD.parquet``, one file per day, with the
raw column names a card processor would send (``txn_id``, ``txn_ts``, ``currency_code``...), so
staging has real renaming and cleanup to do. Fraud follows patterns a model can learn but not
perfectly: night hours, amounts far above the user's usual, foreign countries, online channel, new
devices and bursts of transactions; some legitimate travel and big purchases look similar.

Same parameters and seed give the same bytes: every random draw comes from one seeded generator
and the Parquet writer is given a fixed schema and options.

A ``Fault`` breaks one day's partition the way real feeds break (see ``FAULTS``), so tests and
demos can prove the pipeline halts or copes. Faults draw from their own generator: every other
partition keeps its clean bytes.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

LANDING_SCHEMA = pa.schema(
    [
        pa.field("txn_id", pa.string(), nullable=False),
        pa.field("txn_ts", pa.timestamp("us"), nullable=False),
        pa.field("user_id", pa.string(), nullable=False),
        pa.field("merchant_id", pa.string(), nullable=False),
        pa.field("merchant_category", pa.string()),
        pa.field("amount", pa.float64(), nullable=False),
        pa.field("currency_code", pa.string()),
        pa.field("country_code", pa.string()),
        pa.field("channel", pa.string()),
        pa.field("device_type", pa.string()),
        pa.field("is_fraud", pa.bool_(), nullable=False),
    ]
)

COUNTRIES = np.array(["US", "GB", "DE", "FR", "CA", "ES", "IT", "NL", "BR", "MX", "NG", "RU"])
HOME_COUNTRY_WEIGHTS = np.array([0.55, 0.12, 0.08, 0.07, 0.08, 0.05, 0.05, 0, 0, 0, 0, 0])
CURRENCY_BY_COUNTRY = {
    "US": "USD", "GB": "GBP", "DE": "EUR", "FR": "EUR", "CA": "CAD", "ES": "EUR", "IT": "EUR",
    "NL": "EUR", "BR": "BRL", "MX": "MXN", "NG": "NGN", "RU": "RUB",
}
CATEGORIES = np.array(
    ["grocery", "restaurants", "fuel", "retail", "travel", "electronics", "jewelry",
     "gift_cards", "entertainment", "health"]
)
CATEGORY_WEIGHTS = np.array([0.25, 0.18, 0.12, 0.15, 0.05, 0.06, 0.02, 0.02, 0.08, 0.07])
CATEGORY_AMOUNT_FACTOR = np.array([1.0, 0.8, 1.1, 1.5, 4.0, 3.0, 5.0, 1.5, 0.9, 1.2])
FRAUD_CATEGORY_WEIGHTS = np.array([0.05, 0.05, 0.04, 0.12, 0.12, 0.25, 0.15, 0.18, 0.02, 0.02])
CHANNELS = np.array(["pos", "online", "contactless", "atm"])
DEVICES = np.array(["ios", "android", "web", "terminal"])
# Share of transactions by hour of day for normal spending: low at night, peaks at noon and 6 pm.
LEGIT_HOUR_WEIGHTS = np.array(
    [0.4, 0.25, 0.15, 0.1, 0.1, 0.2, 0.6, 1.5, 2.8, 3.6, 4.2, 5.0,
     5.8, 5.4, 4.8, 4.6, 4.9, 5.6, 6.0, 5.5, 4.4, 3.2, 2.0, 1.0]
)
FRAUD_HOUR_WEIGHTS = np.array(
    [4.0, 4.5, 4.8, 4.5, 3.8, 2.5, 1.5, 1.0, 1.0, 1.0, 1.2, 1.4,
     1.5, 1.4, 1.3, 1.3, 1.4, 1.5, 1.6, 1.8, 2.0, 2.4, 3.0, 3.5]
)


FAULTS = {
    "dropped-column": "the partition lacks column country_code",
    "renamed-column": "column merchant_category arrives renamed to merchant_cat",
    "type-change": "amount arrives as a string",
    "null-explosion": "40% of merchant_category is null",
    "label-collapse": "the fraud rate falls to 1/100 of normal (99% of frauds labelled 0)",
    "unit-change": "amount arrives in cents (x100)",
    "duplicate-partition": "the day's records are re-sent inside the next day's partition (or twice in "
                           "their own file, on the last day)",
    "empty-day": "the partition has the right schema and 0 rows",
    "corrupt-file": "the partition is truncated mid-file (unreadable Parquet)",
    "late-partition": "the partition is held back under <landing>/late/; move it into place to deliver it late",
    "reused-ids": "the day's txn_ids are copied from the first day's partition (other events, same ids)",
    "blank-ids": "40% of txn_id are empty or blank",
    "conflicting-resend": "2% of the day's records are re-sent with the same id and time but the label flipped",
    "earlier-day-rows": "10% of the day's rows are stamped 11 days earlier (they would rewrite that day)",
    "label-flood": "the day has a fifth of its rows, every one labelled fraud (too few rows for the ratio bounds; "
                   "the exact binomial bound judges it)",
    "non-finite-amount": "1% of amount is NaN and 1% infinite",
    "float32-amount": "amount arrives as float32 where double is declared",
    "zoned-timestamps": "txn_ts carries a time zone (America/New_York, same instants): stored as UTC, unchanged",
    "misnamed-file": "the partition arrives as YYYY-MM-DD.parq (not ingested: a named warning)",
    "upper-case-suffix": "the partition arrives as YYYY-MM-DD.PARQUET (not ingested: a named warning)",
    "directory-partition": "the partition arrives as a directory named YYYY-MM-DD.parquet holding the file",
    "corrupt-page": "bytes inside a data page of amount are overwritten; the footer is intact (a page checksum "
                    "mismatch)",
    "shifted-local-time": "txn_ts arrives as naive New York local time (5 hours behind) where the source declares "
                          "UTC",
    "user-id-format": "user_id loses its prefix and zero padding (u_000042 arrives as 42): every user looks new",
    "user-id-trailing-space": "user_id arrives with a trailing space ('u_000042 '): every user looks new",
    "alpha3-country": "country_code arrives as ISO alpha-3 (US as USA)",
    "unseen-currency": "every currency_code arrives as XXX (ISO's \"no currency\"): every currency unseen",
    "swapped-categories": "merchant categories grocery and retail arrive swapped",
}
ALPHA3 = {"US": "USA", "GB": "GBR", "DE": "DEU", "FR": "FRA", "CA": "CAN", "ES": "ESP", "IT": "ITA", "NL": "NLD",
          "BR": "BRA", "MX": "MEX", "NG": "NGA", "RU": "RUS"}
# Faults that need an earlier partition to copy from.
NEEDS_EARLIER_DAY = ("reused-ids",)
LATE_FOLDER = "late"


@dataclass(frozen=True)
class Fault:
    """A fault injected into one day's partition."""

    kind: str
    """One of ``FAULTS``."""
    day: dt.date
    """Day of the partition that gets the fault."""

    def __post_init__(self) -> None:
        if self.kind not in FAULTS:
            raise ValueError(f"demo data: unknown fault {self.kind!r}; expected one of {sorted(FAULTS)}")


@dataclass(frozen=True)
class DemoDataOptions:
    """What to generate."""

    rows: int = 1_000_000
    """Approximate number of transactions (exact before re-sent duplicates are added)."""
    days: int = 60
    """Number of daily partitions."""
    seed: int = 7
    """Seed of the one random generator; same seed, same bytes."""
    start_date: dt.date = dt.date(2026, 1, 1)
    """Date of the first partition."""
    fraud_rate: float = 0.008
    """Approximate share of fraudulent transactions."""
    fault: Fault | None = None
    """A fault to inject into one day's partition; None for clean data."""

    def __post_init__(self) -> None:
        if self.rows < 100:
            raise ValueError(f"demo data: rows must be at least 100, got {self.rows}")
        if self.days < 1:
            raise ValueError(f"demo data: days must be at least 1, got {self.days}")
        if not 0 < self.fraud_rate < 0.5:
            raise ValueError(f"demo data: fraud_rate must be in (0, 0.5), got {self.fraud_rate}")
        last = self.start_date + dt.timedelta(days=self.days - 1)
        if self.fault and not self.start_date <= self.fault.day <= last:
            raise ValueError(f"demo data: fault day {self.fault.day} is outside the generated days "
                             f"{self.start_date} to {last}")
        if self.fault and self.fault.kind in NEEDS_EARLIER_DAY and self.fault.day == self.start_date:
            raise ValueError(f"demo data: fault {self.fault.kind!r} copies from an earlier day; pick a day after "
                             f"{self.start_date}")


def _normalise(weights: np.ndarray) -> np.ndarray:
    return weights / weights.sum()


def _generate_columns(opts: DemoDataOptions) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(opts.seed)
    n_users = max(50, opts.rows // 60)
    n_merchants = max(20, opts.rows // 250)

    # Users: a home country (and its currency), a usual spend level, usual channel and device.
    user_country = rng.choice(COUNTRIES, size=n_users, p=_normalise(HOME_COUNTRY_WEIGHTS))
    user_log_amount = rng.normal(3.2, 0.6, size=n_users)
    user_activity = rng.lognormal(0.0, 0.8, size=n_users)
    user_channel = rng.choice(CHANNELS, size=n_users, p=[0.5, 0.25, 0.2, 0.05])
    user_device = rng.choice(DEVICES, size=n_users, p=[0.35, 0.35, 0.15, 0.15])
    merchant_cat_idx = rng.choice(len(CATEGORIES), size=n_merchants, p=_normalise(CATEGORY_WEIGHTS))

    n_fraud_target = int(opts.rows * opts.fraud_rate)
    burst_sizes = rng.integers(1, 7, size=max(1, n_fraud_target // 3))
    burst_sizes = burst_sizes[np.cumsum(burst_sizes) <= max(1, n_fraud_target)]
    n_fraud = int(burst_sizes.sum())
    n_legit = opts.rows - n_fraud

    # Legitimate spending.
    l_user = rng.choice(n_users, size=n_legit, p=_normalise(user_activity))
    l_day = rng.integers(0, opts.days, size=n_legit)
    l_hour = rng.choice(24, size=n_legit, p=_normalise(LEGIT_HOUR_WEIGHTS))
    l_second = l_day * 86400 + l_hour * 3600 + rng.integers(0, 3600, size=n_legit)
    l_merchant = rng.integers(0, n_merchants, size=n_legit)
    l_cat_idx = merchant_cat_idx[l_merchant]
    l_amount = np.exp(rng.normal(user_log_amount[l_user], 0.55)) * CATEGORY_AMOUNT_FACTOR[l_cat_idx]
    l_travel = rng.random(n_legit) < 0.02
    l_country = np.where(l_travel, rng.choice(COUNTRIES, size=n_legit), user_country[l_user])
    l_channel = np.where(rng.random(n_legit) < 0.8, user_channel[l_user], rng.choice(CHANNELS, size=n_legit))
    l_device = np.where(rng.random(n_legit) < 0.92, user_device[l_user], rng.choice(DEVICES, size=n_legit))

    # Fraud: bursts on a victim's card, mostly at night, online, abroad and far above usual spend.
    # A quarter of bursts are "stealthy" and look like ordinary spending, so AUC stays below 1.
    n_bursts = len(burst_sizes)
    b_user = rng.choice(n_users, size=n_bursts, p=_normalise(user_activity))
    b_stealthy = rng.random(n_bursts) < 0.25
    b_day = rng.integers(0, opts.days, size=n_bursts)
    b_hour = np.where(
        b_stealthy,
        rng.choice(24, size=n_bursts, p=_normalise(LEGIT_HOUR_WEIGHTS)),
        rng.choice(24, size=n_bursts, p=_normalise(FRAUD_HOUR_WEIGHTS)),
    )
    b_start = b_day * 86400 + b_hour * 3600 + rng.integers(0, 3000, size=n_bursts)
    b_foreign = (~b_stealthy) & (rng.random(n_bursts) < 0.6)
    b_country = np.where(b_foreign, rng.choice(COUNTRIES[7:], size=n_bursts), user_country[b_user])
    b_device = np.where(b_stealthy, user_device[b_user], rng.choice(DEVICES, size=n_bursts))

    f_burst = np.repeat(np.arange(n_bursts), burst_sizes)
    f_user = b_user[f_burst]
    f_offset = np.concatenate([np.cumsum(rng.exponential(90.0, size=s)) for s in burst_sizes]).astype(np.int64)
    f_second = np.minimum(b_start[f_burst] + f_offset, opts.days * 86400 - 1)
    f_cat_idx = rng.choice(len(CATEGORIES), size=n_fraud, p=_normalise(FRAUD_CATEGORY_WEIGHTS))
    f_merchant_pool = [np.flatnonzero(merchant_cat_idx == c) for c in range(len(CATEGORIES))]
    f_merchant = np.array(
        [
            pool[rng.integers(0, len(pool))] if len(pool) else rng.integers(0, n_merchants)
            for pool in (f_merchant_pool[i] for i in f_cat_idx)
        ],
        dtype=np.int64,
    )
    f_cat_idx = merchant_cat_idx[f_merchant]
    f_multiplier = np.where(b_stealthy[f_burst], rng.lognormal(0.4, 0.4, size=n_fraud), rng.lognormal(1.6, 0.7, size=n_fraud))
    f_amount = np.exp(user_log_amount[f_user]) * f_multiplier * np.sqrt(CATEGORY_AMOUNT_FACTOR[f_cat_idx])
    f_channel = np.where(b_stealthy[f_burst], user_channel[f_user], np.where(rng.random(n_fraud) < 0.8, "online", "pos"))

    user = np.concatenate([l_user, f_user])
    second = np.concatenate([l_second, f_second])
    merchant = np.concatenate([l_merchant, f_merchant])
    amount = np.round(np.concatenate([l_amount, f_amount]), 2)
    country = np.concatenate([l_country, b_country[f_burst]])
    channel = np.concatenate([l_channel, f_channel]).astype(object)
    device = np.concatenate([l_device, b_device[f_burst]]).astype(object)
    is_fraud = np.concatenate([np.zeros(n_legit, bool), np.ones(n_fraud, bool)])

    order = np.lexsort((user, second))
    n = len(order)
    user, second, merchant, amount = user[order], second[order], merchant[order], amount[order]
    country, channel, device, is_fraud = country[order], channel[order], device[order], is_fraud[order]
    # Travellers often pay in local currency; everyone else in their home currency.
    home_currency = np.array([CURRENCY_BY_COUNTRY[c] for c in user_country])[user]
    local_currency = np.array([CURRENCY_BY_COUNTRY[c] for c in country])
    currency = np.where(rng.random(n) < 0.5, local_currency, home_currency).astype(object)

    # Raw-data untidiness that staging cleans: stray case and whitespace, empty strings, nulls.
    category = CATEGORIES[merchant_cat_idx[merchant]].astype(object)
    messy = rng.random(n) < 0.01
    category[messy] = np.char.add(" ", np.char.upper(category[messy].astype(str))).astype(object)
    shouting = rng.random(n) < 0.01
    channel[shouting] = np.char.upper(channel[shouting].astype(str)).astype(object)
    device[rng.random(n) < 0.004] = ""
    device[rng.random(n) < 0.004] = None

    return {
        "txn_id": np.char.add("tx_", np.char.zfill(np.arange(n).astype(str), 9)),
        "second": second,
        "user_id": np.char.add("u_", np.char.zfill(user.astype(str), 6)),
        "merchant_id": np.char.add("m_", np.char.zfill(merchant.astype(str), 5)),
        "merchant_category": category,
        "amount": amount,
        "currency_code": currency,
        "country_code": country.astype(object),
        "channel": channel,
        "device_type": device,
        "is_fraud": is_fraud,
    }


def partition_path(landing: Path, day: dt.date) -> Path:
    """Where the partition of ``day`` lands."""
    return landing / "transactions" / f"{day.isoformat()}.parquet"


def late_path(landing: Path, day: dt.date) -> Path:
    """Where a ``late-partition`` fault holds the partition of ``day`` back."""
    return landing / LATE_FOLDER / "transactions" / f"{day.isoformat()}.parquet"


def fault_path(landing: Path, day: dt.date, kind: str | None) -> Path:
    """Where the partition of ``day`` is written when it gets fault ``kind`` (None: where it belongs)."""
    path = partition_path(landing, day)
    if kind == "late-partition":
        return late_path(landing, day)
    if kind == "misnamed-file":
        return path.with_suffix(".parq")
    if kind == "upper-case-suffix":
        return path.with_suffix(".PARQUET")
    if kind == "directory-partition":
        return path / "part-0.parquet"
    return path


def _replace(table: pa.Table, name: str, values: pa.Array) -> pa.Table:
    i = table.schema.get_field_index(name)
    return table.set_column(i, pa.field(name, values.type, table.schema.field(i).nullable), values)


def _break(table: pa.Table, kind: str, rng: np.random.Generator) -> pa.Table:
    """The partition's table with fault ``kind`` applied (faults that change the table only)."""
    n = table.num_rows
    if kind == "dropped-column":
        return table.drop_columns(["country_code"])
    if kind == "renamed-column":
        return table.rename_columns(["merchant_cat" if c == "merchant_category" else c for c in table.column_names])
    if kind == "type-change":
        return _replace(table, "amount", pc.cast(table.column("amount"), pa.string()).combine_chunks())
    if kind == "null-explosion":
        mask = pa.array(rng.random(n) < 0.4)
        return _replace(table, "merchant_category", pc.if_else(mask, pa.scalar(None, pa.string()),
                                                               table.column("merchant_category")).combine_chunks())
    if kind == "label-collapse":
        keep = pa.array(rng.random(n) < 0.01)
        return _replace(table, "is_fraud", pc.and_(table.column("is_fraud"), keep).combine_chunks())
    if kind == "unit-change":
        return _replace(table, "amount", pc.multiply(table.column("amount"), 100.0).combine_chunks())
    if kind == "empty-day":
        return table.slice(0, 0)
    if kind == "blank-ids":
        draw = rng.random(n)
        ids = pc.if_else(pa.array(draw < 0.3), "", table.column("txn_id").combine_chunks())
        return _replace(table, "txn_id", pc.if_else(pa.array(draw > 0.9), "  ", ids))
    if kind == "conflicting-resend":
        resent = table.take(pa.array(np.flatnonzero(rng.random(n) < 0.02)))
        return pa.concat_tables([table, _replace(resent, "is_fraud", pc.invert(resent.column("is_fraud")).combine_chunks())])
    if kind == "earlier-day-rows":
        mask = pa.array(rng.random(n) < 0.1)
        earlier = pc.subtract(table.column("txn_ts"), pa.scalar(dt.timedelta(days=11), pa.duration("us")))
        return _replace(table, "txn_ts", pc.if_else(mask, earlier, table.column("txn_ts")).combine_chunks())
    if kind == "label-flood":
        small = table.slice(0, n // 5)
        return _replace(small, "is_fraud", pa.array([True] * small.num_rows, pa.bool_()))
    if kind == "non-finite-amount":
        draw = rng.random(n)
        amount = np.where(draw < 0.01, np.nan, np.where(draw > 0.99, np.inf, table.column("amount").to_numpy()))
        return _replace(table, "amount", pa.array(amount, pa.float64()))
    if kind == "float32-amount":
        return _replace(table, "amount", pc.cast(table.column("amount"), pa.float32()).combine_chunks())
    if kind == "shifted-local-time":
        return _replace(table, "txn_ts", pc.subtract(table.column("txn_ts"),
                                                     pa.scalar(dt.timedelta(hours=5), pa.duration("us"))).combine_chunks())
    if kind == "user-id-format":
        number = pc.cast(pc.utf8_slice_codeunits(table.column("user_id"), 2), pa.int64())
        return _replace(table, "user_id", pc.cast(number, pa.string()).combine_chunks())
    if kind == "user-id-trailing-space":
        return _replace(table, "user_id", pc.binary_join_element_wise(table.column("user_id"), " ", "").combine_chunks())
    if kind == "alpha3-country":
        codes = [ALPHA3.get(c, c) if c is not None else None for c in table.column("country_code").to_pylist()]
        return _replace(table, "country_code", pa.array(codes, pa.string()))
    if kind == "unseen-currency":
        currency = table.column("currency_code")
        return _replace(table, "currency_code", pc.if_else(pc.is_null(currency), currency, "XXX").combine_chunks())
    if kind == "swapped-categories":
        category = table.column("merchant_category")
        clean = pc.utf8_lower(pc.utf8_trim_whitespace(category))
        swapped = pc.if_else(pc.equal(clean, "grocery"), "retail", pc.if_else(pc.equal(clean, "retail"), "grocery", category))
        return _replace(table, "merchant_category", swapped.combine_chunks())
    if kind == "zoned-timestamps":
        zoned = pc.cast(table.column("txn_ts"), pa.timestamp("us", tz="UTC")).combine_chunks()
        return _replace(table, "txn_ts", zoned.cast(pa.timestamp("us", tz="America/New_York")))
    return table


def _write(table: pa.Table, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    # Page checksums let ingestion tell a corrupted page from data, even with the footer intact.
    pq.write_table(table, tmp, compression="zstd", write_statistics=True, write_page_checksum=True)
    tmp.replace(path)


def _corrupt_page(path: Path, column: str, rng: np.random.Generator) -> None:
    """Overwrite bytes in the middle of ``column``'s first column chunk (its pages), leaving the footer as written."""
    chunk = pq.read_metadata(path).row_group(0).column(pq.read_schema(path).get_field_index(column))
    start = chunk.dictionary_page_offset or chunk.data_page_offset
    with open(path, "r+b") as fh:
        fh.seek(start + chunk.total_compressed_size // 2)
        fh.write(rng.integers(0, 256, size=16, dtype=np.uint8).tobytes())


def generate(landing: Path, opts: DemoDataOptions) -> list[Path]:
    """Write ``opts.days`` daily partitions under ``landing`` and return their paths.

    About 0.05% of transactions are re-sent by the "processor" in the same partition (same id,
    same values), as real feeds do; staging deduplicates them. ``opts.fault`` breaks one day.
    """
    cols = _generate_columns(opts)
    rng = np.random.default_rng(opts.seed + 1)
    fault_rng = np.random.default_rng([opts.seed, 4])
    start = np.datetime64(opts.start_date.isoformat(), "us")
    timestamps = start + cols.pop("second").astype("timedelta64[s]").astype("timedelta64[us]")
    day_index = ((timestamps - start) // np.timedelta64(1, "D")).astype(np.int64)
    paths = []
    resent: pa.Table | None = None  # a duplicated partition, re-sent with the next day's
    first_ids: pa.Array | None = None  # the first day's ids, for a reused-ids fault
    for day in range(opts.days):
        idx = np.flatnonzero(day_index == day)
        resend = idx[rng.random(len(idx)) < 0.0005]
        idx = np.sort(np.concatenate([idx, resend]), kind="stable")
        arrays = [
            pa.array(timestamps[idx] if f.name == "txn_ts" else cols[f.name][idx], type=f.type)
            for f in LANDING_SCHEMA
        ]
        table = pa.Table.from_arrays(arrays, schema=LANDING_SCHEMA)
        date = opts.start_date + dt.timedelta(days=day)
        path = partition_path(landing, date)
        if resent is not None:
            table, resent = pa.concat_tables([table, resent]), None
        kind = opts.fault.kind if opts.fault and opts.fault.day == date else None
        if first_ids is None:
            first_ids = table.column("txn_id").combine_chunks()
        path = fault_path(landing, date, kind)
        if kind == "reused-ids":
            table = _replace(table, "txn_id", pc.take(first_ids, pa.array(np.arange(table.num_rows) % len(first_ids))))
        elif kind == "duplicate-partition" and day < opts.days - 1:
            resent = table
        elif kind == "duplicate-partition":
            table = pa.concat_tables([table, table])
        elif kind:
            table = _break(table, kind, fault_rng)
        _write(table, path)
        if kind == "corrupt-file":
            with open(path, "r+b") as fh:
                fh.truncate(path.stat().st_size // 2)
        elif kind == "corrupt-page":
            _corrupt_page(path, "amount", fault_rng)
        paths.append(path)
    return paths
