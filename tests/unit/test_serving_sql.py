import pytest

from training.errors import UnservableFeatureError
from serving.bundle import InputField
from training.serving_sql import check_serving_sql, referenced_columns, request_schema

GOOD = """
with staged as (select __row_id, cast(amount as double) as amount from request),
features as (
    select t.__row_id, ln(1 + greatest(t.amount, 0)) - s.mean as centred
    from staged as t cross join fitted_stats as s
)
select * from features order by __row_id
"""


def test_row_level_sql_over_request_and_frozen_tables_passes() -> None:
    check_serving_sql(GOOD, {"fitted_stats"})


@pytest.mark.parametrize(
    ("replacement", "feature", "construct"),
    [
        ("epoch(now()) - epoch(t.at)", "age", "now()"),
        ("random()", "age", "rand()"),
        ("avg(t.amount) over (partition by t.user_id)", "age", "window function"),
        ("(select max(amount) from staging.stg_bank__transactions)", "age", "table staging.stg_bank__transactions"),
        ("current_date - t.at", "age", "current_date()"),
        ("(select count(*) from read_csv('/etc/passwd'))", "age", "read_csv()"),
    ],
)
def test_unservable_constructs_name_the_feature_and_construct(replacement: str, feature: str, construct: str) -> None:
    sql = GOOD.replace("ln(1 + greatest(t.amount, 0)) - s.mean as centred", f"{replacement} as {feature}")
    with pytest.raises(UnservableFeatureError) as info:
        check_serving_sql(sql, {"fitted_stats"})
    message = str(info.value)
    assert f"feature '{feature}' uses {construct}" in message
    assert "fitted_state" in message  # says how to fix it


def test_unfrozen_table_is_refused_even_if_it_exists_in_the_warehouse() -> None:
    with pytest.raises(UnservableFeatureError, match="table fitted_stats \\(not frozen into the bundle\\)"):
        check_serving_sql(GOOD, set())


def test_the_request_schema_is_what_the_serving_sql_reads_plus_what_is_kept() -> None:
    fields = (InputField("id", "string", False), InputField("Sepal.Length", "double", True),
              InputField("note", "string", True), InputField("ts", "timestamp", False))
    sql = ('with staged as (select __row_id, cast("Sepal.Length" as double) as sepal_length from request) '
           "select __row_id, sepal_length * 2 as doubled from staged order by __row_id")
    assert [f.name for f in request_schema(sql, fields)] == ["Sepal.Length"]
    assert [f.name for f in request_schema(sql, fields, keep={"id", "ts"})] == ["id", "Sepal.Length", "ts"]
    assert "note" not in referenced_columns(sql)
