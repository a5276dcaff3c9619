import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier

from serving import registry
from serving.bundle import FORMAT_VERSION, InputField, load_bundle
from serving.errors import BundleError, RegistryError
from training.bundle import bundle_manifest_fields, write_bundle
from training.export import export_onnx

SQL = "select __row_id, x * 2 as x2 from request order by __row_id"


def _bundle(tmp_path: Path, threshold: float = 0.5) -> tuple[str, Path]:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 1)).astype(np.float32)
    model = HistGradientBoostingClassifier(max_iter=5, random_state=0).fit(X, (X[:, 0] > 0).astype(int))
    return write_bundle(
        registry.bundles_dir(tmp_path),
        model_bytes=export_onnx(model, 1),
        serving_sql=SQL,
        tables={"stats": pa.table({"mean": [1.0]})},
        manifest=bundle_manifest_fields(task="binary", feature_names=("x2",),
                                        input_schema=(InputField("x", "double", False),), threshold=threshold),
    )


def test_bundle_round_trip_and_content_address(tmp_path: Path) -> None:
    bundle_id, path = _bundle(tmp_path)
    again_id, again_path = _bundle(tmp_path)
    assert (bundle_id, path) == (again_id, again_path)
    assert path.name == bundle_id and len(bundle_id) == 64
    bundle = load_bundle(path)
    assert bundle.manifest.feature_names == ("x2",)
    assert bundle.tables["stats"].column("mean").to_pylist() == [1.0]
    assert json.loads((path / "manifest.json").read_text())["format_version"] == FORMAT_VERSION
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".tmp")]
    assert _bundle(tmp_path, threshold=0.7)[0] != bundle_id


def test_tampered_bundle_is_refused(tmp_path: Path) -> None:
    _, path = _bundle(tmp_path)
    (path / "serving.sql").write_text(SQL.replace("2", "3"))
    with pytest.raises(BundleError, match="contents do not match bundle id"):
        load_bundle(path)


def test_unknown_format_version_is_refused(tmp_path: Path) -> None:
    _, path = _bundle(tmp_path)
    manifest = json.loads((path / "manifest.json").read_text())
    (path / "manifest.json").write_text(json.dumps({**manifest, "format_version": 99}))
    with pytest.raises(BundleError, match="format_version 99 is not supported"):
        load_bundle(path)


def test_unlisted_files_such_as_pickles_are_refused(tmp_path: Path) -> None:
    _, path = _bundle(tmp_path)
    (path / "model.pkl").write_bytes(b"\x80\x04")
    with pytest.raises(BundleError, match="model.pkl"):
        load_bundle(path)


def test_registry_promotes_atomically_and_keeps_history(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="neither a model bundle"):
        registry.resolve_bundle_path(tmp_path)
    registry.bundles_dir(tmp_path).mkdir(parents=True)
    with pytest.raises(RegistryError, match="no champion yet"):
        registry.resolve_bundle_path(tmp_path)
    first, _ = _bundle(tmp_path)
    second, _ = _bundle(tmp_path, threshold=0.6)
    registry.promote(tmp_path, first, by="test", reason="first")
    record = registry.promote(tmp_path, second, by="test", reason="better")
    assert record["previous_bundle_id"] == first
    assert registry.resolve_bundle_path(tmp_path).name == second
    history = [json.loads(line) for line in (tmp_path / "history.jsonl").read_text().splitlines()]
    assert [h["bundle_id"] for h in history] == [first, second]
    assert not list(tmp_path.glob(".champion*"))
    with pytest.raises(RegistryError, match="no such bundle"):
        registry.promote(tmp_path, "f" * 64, by="test", reason="typo")
    assert registry.read_champion(tmp_path)["bundle_id"] == second


def _external_data_model() -> bytes:
    from onnx import TensorProto, helper, numpy_helper
    from onnx.external_data_helper import convert_model_to_external_data

    weight = numpy_helper.from_array(np.ones((1, 1), dtype=np.float32), name="w")
    graph = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 1])], [weight])
    model = helper.make_model(graph)
    convert_model_to_external_data(model, all_tensors_to_one_file=True, location="../../../etc/weights.bin",
                                   size_threshold=0)
    return model.SerializeToString()


def test_onnx_with_external_data_is_refused(tmp_path: Path) -> None:
    from serving.onnx_scan import check_no_external_data

    _, path = _bundle(tmp_path)
    check_no_external_data((path / "model.onnx").read_bytes(), "ok")  # a self-contained model passes
    _, bad = write_bundle(
        registry.bundles_dir(tmp_path), model_bytes=_external_data_model(), serving_sql=SQL, tables={},
        manifest=bundle_manifest_fields(task="binary", feature_names=("x2",),
                                        input_schema=(InputField("x", "double", False),), threshold=0.5),
    )
    with pytest.raises(BundleError, match="references external data"):
        load_bundle(bad)


def test_pickle_in_place_of_the_model_is_refused(tmp_path: Path) -> None:
    import pickle

    from serving import Predictor

    _, path = write_bundle(
        registry.bundles_dir(tmp_path), model_bytes=pickle.dumps({"not": "a model"}), serving_sql=SQL, tables={},
        manifest=bundle_manifest_fields(task="binary", feature_names=("x2",),
                                        input_schema=(InputField("x", "double", False),), threshold=0.5),
    )
    with pytest.raises(BundleError, match="not a valid ONNX protobuf|could not be loaded by ONNX Runtime"):
        Predictor.load(path)
