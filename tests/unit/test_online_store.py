"""The online store, embedded (LMDB) and Redis (a real redis-server on 127.0.0.1), one contract:
idempotent by event key, landed data replaces served copies, bounded by the window and the keep
rules, stale and implausible events refused and counted, a store that is down says so."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from serving.store import EntitySpec, KeepRule, StoreSchemaError, StoreUnavailable, check_fields, open_store

DAY = 86_400_000_000
SPEC = EntitySpec("user", "entity_events__user", "user_id", "txn_id", "txn_ts", ("amount", "country_code"), 30,
                  (KeepRule(), KeepRule("country_code")))


@pytest.fixture(params=["embedded", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path):
    if request.param == "embedded":
        s = open_store(f"embedded:{tmp_path / 'store'}")
    else:
        url = request.getfixturevalue("redis_url")
        from serving.store.redis import RedisStore

        s = RedisStore(url, prefix=f"t{uuid.uuid4().hex[:8]}")  # a namespace of its own per test
    yield s
    s.close()


def _times(store, key: str) -> list[int]:
    return sorted(store.read(SPEC, [key])[key].times)


def test_an_event_is_recorded_once_by_its_key(store) -> None:
    first = store.record(SPEC, [("u1", ("t1", 0, 1.0, "US")), ("u1", ("t2", DAY, 2.0, "FR")),
                                ("u1", ("t2", DAY, 2.0, "FR"))])
    again = store.record(SPEC, [("u1", ("t1", 0, 99.0, "DE"))])  # a re-send: the first copy stays
    assert (first.recorded, first.duplicates, again.recorded, again.duplicates) == (2, 1, 0, 1)
    held = store.read(SPEC, ["u1", "nobody"])
    assert sorted(held["u1"].keys) == ["t1", "t2"] and 99.0 not in held["u1"].fields[0]
    assert len(held["nobody"]) == 0  # an unknown entity has no events: it is new


def test_landed_events_replace_what_a_server_recorded(store) -> None:
    store.record(SPEC, [("u1", ("t1", 0, 1.0, "US"))])
    outcome = store.record(SPEC, [("u1", ("t1", 0, 1.5, "US"))], replace=True, check=False)
    assert outcome.recorded == 1 and store.read(SPEC, ["u1"])["u1"].fields[0] == [1.5]


def test_old_events_are_dropped_except_what_the_unbounded_aggregates_need(store) -> None:
    rows = [("u1", (f"old{i}", i * DAY, 1.0, country)) for i, country in enumerate(["US", "FR", "US", "DE", "FR"])]
    rows += [("u1", ("new", 100 * DAY, 1.0, "US"))]
    store.record(SPEC, rows, check=False)
    held = store.read(SPEC, ["u1"])["u1"]
    # 100 days on, the window (30 days and a day's slack) holds only "new"; of older events it
    # keeps the latest (old4) and the latest per country (old2 US, old4 FR, old3 DE).
    assert sorted(held.keys) == ["new", "old2", "old3", "old4"]


def test_compaction_runs_once_a_day_of_entity_time_and_its_mark_is_kept(store) -> None:
    rows = [("u1", (f"old{i}", i * DAY, 1.0, "US")) for i in range(3)] + [("u1", ("new", 100 * DAY, 1.0, "FR"))]
    store.record(SPEC, rows, check=False)
    held = store.read(SPEC, ["u1"])["u1"]
    cutoff = 100 * DAY - 31 * DAY
    assert sorted(held.keys) == ["new", "old2"] and held.compacted_to == cutoff  # the mark survives the store
    # An hour on, old2 is no older than before: nothing is scanned, and nothing held is lost.
    store.record(SPEC, [("u1", ("later", 100 * DAY + DAY // 24, 1.0, "FR"))])
    held = store.read(SPEC, ["u1"])["u1"]
    assert sorted(held.keys) == ["later", "new", "old2"] and held.compacted_to == cutoff
    # Once the cutoff has moved a day or more, the next write compacts again: "new" goes, "later"
    # stays as the latest in FR (and of all old events), old2 as the latest in US.
    store.record(SPEC, [("u1", ("next", 132 * DAY, 1.0, "FR"))], check=False)
    held = store.read(SPEC, ["u1"])["u1"]
    assert sorted(held.keys) == ["later", "next", "old2"] and held.compacted_to == 132 * DAY - 31 * DAY


def test_stale_and_implausible_events_are_counted_not_recorded(store) -> None:
    store.record(SPEC, [("u1", ("t1", 100 * DAY, 1.0, "US"))])
    outcome = store.record(SPEC, [("u1", ("stale", 60 * DAY, 1.0, "US")),       # older than the window
                                  ("u2", ("future", 900 * DAY, 1.0, "US")),     # far past all the store knows
                                  ("u2", ("fine", 100 * DAY + 3600 * 10**6, 1.0, "US"))])
    assert (outcome.recorded, outcome.stale, outcome.implausible) == (1, 1, 1)
    assert _times(store, "u2") == [100 * DAY + 3600 * 10**6]


def test_a_batch_replaying_days_in_order_is_recorded_whole(store) -> None:
    store.record(SPEC, [("u1", ("t0", 0, 1.0, "US"))])
    week = [(f"u{i % 3}", (f"t{i}", i * DAY // 2, 1.0, "US")) for i in range(1, 15)]  # a week, in order
    outcome = store.record(SPEC, week)
    assert outcome.recorded == 14 and outcome.implausible == 0


def test_a_store_holding_other_fields_for_the_entity_is_refused(store) -> None:
    check_fields(store, SPEC)
    other = EntitySpec("user", "entity_events__user", "user_id", "txn_id", "txn_ts", ("amount",), 30)
    with pytest.raises(StoreSchemaError, match="rebuild the store"):
        check_fields(store, other)


def test_an_unreachable_redis_is_a_clear_error() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here
    from serving.store.redis import RedisStore

    down = RedisStore(f"redis://127.0.0.1:{port}/0")
    with pytest.raises(StoreUnavailable, match=f"127.0.0.1:{port}.*unreachable"):
        down.read(SPEC, ["u1"])
    with pytest.raises(StoreUnavailable):
        down.ping()


def test_two_embedded_stores_on_one_folder_share_it(tmp_path: Path) -> None:
    a, b = open_store(f"embedded:{tmp_path}"), open_store(f"embedded:{tmp_path}")
    a.record(SPEC, [("u1", ("t1", 0, 1.0, "US"))])
    a.close()
    assert b.read(SPEC, ["u1"])["u1"].keys == ["t1"]  # still open for b
    b.close()


def test_an_unknown_store_url_names_the_forms() -> None:
    with pytest.raises(ValueError, match="embedded:<folder> or redis://"):
        open_store("sqlite:///x")
