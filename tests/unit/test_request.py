"""A request made from Python values and one made from Arrow hold the same records."""

import datetime as dt

import pyarrow as pa

from serving.request import ROW_ID, Request
from serving.schema import records_to_request, records_to_table
from tests.unit.test_schema import FIELDS, GOOD

RECORDS = [GOOD, {**GOOD, "id": "b", "count": None, "at": "2026-03-29T03:30:00+02:00"}, {**GOOD, "id": "c", "amount": 1.5}]


def test_a_few_records_stay_values_and_give_the_general_paths_table() -> None:
    values = records_to_request(RECORDS, FIELDS)
    assert values.has_values and values.values("at")[1] == dt.datetime(2026, 3, 29, 1, 30)  # UTC, naive
    general = records_to_table(RECORDS * 10, FIELDS).slice(0, 3)  # more than a few: built as Arrow
    assert values.table.equals(general.set_column(general.num_columns - 1, ROW_ID, pa.array([0, 1, 2])))
    table = Request.of_table(values.table)
    assert not table.has_values and [table.values(f.name) for f in FIELDS] == [values.values(f.name) for f in FIELDS]


def test_taken_records_keep_their_ids_and_merged_requests_are_renumbered() -> None:
    values = records_to_request(RECORDS, FIELDS)
    for request in (values, Request.of_table(values.table)):
        taken = request.take([2, 0])
        assert taken.values("id") == ["c", "a"] and taken.values(ROW_ID) == [2, 0]
        assert taken.table.column(ROW_ID).to_pylist() == [2, 0]
    merged = Request.concat([values, values.take([1])])
    assert merged.has_values and merged.values("id") == ["a", "b", "c", "b"] and merged.values(ROW_ID) == [0, 1, 2, 3]
    mixed = Request.concat([values, Request.of_table(values.table)])
    assert not mixed.has_values and mixed.table.column(ROW_ID).to_pylist() == list(range(6))
