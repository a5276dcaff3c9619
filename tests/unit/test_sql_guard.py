"""serving.sql_guard: a bundle's SQL is one SELECT over the request, its frozen tables and entity events."""

import pytest

from serving.errors import BundleError
from serving.sql_guard import check_feature_sql, check_identifier

RELATIONS = {"fitted_stats", "user_events"}
GOOD = ("with joined as (select r.*, s.mean from request r left join fitted_stats s using (k)), "
        "final as (select j.*, (select count(*) from user_events e where e.k = j.k) as count_events from joined j) "
        "select * from final")


def test_the_compiled_shape_is_accepted() -> None:
    check_feature_sql(GOOD, RELATIONS, "b")
    check_feature_sql(GOOD + ";", RELATIONS, "b")


@pytest.mark.parametrize("sql, match", [
    ("copy (select * from fitted_stats) to '.tmp/exfil.csv'; " + GOOD, r"\['COPY', 'SELECT'\]"),
    (GOOD + "; update fitted_stats set mean = 0", r"\['SELECT', 'UPDATE'\]"),
    ("attach ':memory:' as m", r"\['ATTACH'\]"),
    ("pragma enable_profiling", r"\['PRAGMA'\]"),
    ("set memory_limit = '100GB'", r"\['SET'\]"),
    ("select * from read_csv('/etc/passwd')", "table function read_csv"),
    ("select * from request, glob('/*')", "table function glob"),
    ("select * from 'secrets.parquet'", "relation 'secrets.parquet'"),
    ("select * from other.main.t", "another schema"),
    ("select * from warehouse_table", "relation 'warehouse_table'"),
    ("select (select max(x) from hidden) from request", "relation 'hidden'"),
    ("selec 1", "does not parse"),
])
def test_anything_else_is_refused_with_the_reason(sql: str, match: str) -> None:
    with pytest.raises(BundleError, match=match):
        check_feature_sql(sql, RELATIONS, "bundle/serving.sql")


@pytest.mark.parametrize("name", ['x" as select 1; --', "Upper", "1st", "a-b", "", "x" * 64, None, "tables/../x"])
def test_relation_names_are_strict_identifiers(name: object) -> None:
    with pytest.raises(BundleError, match="frozen_tables key .* is not a plain identifier"):
        check_identifier(name, "bundle/manifest.json", "frozen_tables key")


def test_identifiers_pass_through() -> None:
    assert check_identifier("fitted_category_vocab", "m", "f") == "fitted_category_vocab"


def _model_with_external_tensor_in(part: str) -> bytes:
    from onnx import TensorProto, helper, numpy_helper

    tensor = numpy_helper.from_array(__import__("numpy").ones((1,), dtype="float32"), name="w")
    tensor.ClearField("raw_data")
    tensor.data_location = TensorProto.EXTERNAL
    entry = tensor.external_data.add()
    entry.key, entry.value = "location", "../../etc/weights.bin"
    io = ([helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    plain = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", *io)
    model = helper.make_model(plain)
    if part == "training_info":
        algorithm = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "train", *io, [tensor])
        model.training_info.add().algorithm.CopyFrom(algorithm)
    else:  # a function's attribute default
        fn = model.functions.add()
        fn.name, fn.domain = "f", "local"
        fn.attribute_proto.add().CopyFrom(helper.make_attribute("t", tensor))
    return model.SerializeToString()


@pytest.mark.parametrize("part", ["training_info", "function_attribute_default"])
def test_external_data_is_found_in_every_part_of_the_model(part: str) -> None:
    from serving.onnx_scan import check_no_external_data

    with pytest.raises(BundleError, match="references external data"):
        check_no_external_data(_model_with_external_tensor_in(part), "bundle")
