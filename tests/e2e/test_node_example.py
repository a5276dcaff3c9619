"""The fused model runs outside Python: onnxruntime-node scores raw records like the Predictor."""

import datetime as dt
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from serving import Predictor
from serving.registry import resolve_bundle_path
from tests.conftest import REPO, PipelineRun

pytestmark = pytest.mark.slow
EXAMPLE = REPO / "examples" / "node"


def test_node_scores_raw_records_like_python(pipeline_run: PipelineRun, raw_records: list[dict], tmp_path: Path) -> None:
    if shutil.which("node") is None:
        pytest.fail("Node.js is not installed: scripts/test installs it (apt-get install -y nodejs npm)")
    if not (EXAMPLE / "node_modules" / "onnxruntime-node").is_dir():
        pytest.fail("examples/node has no node_modules: scripts/test installs them "
                    "(npm ci --ignore-scripts --no-audit --no-fund in examples/node)")
    bundle = resolve_bundle_path(pipeline_run.registry)
    predictor = Predictor.load(bundle, record=False)
    assert predictor.feature_path == "fused"  # the champion's fused model passed its gate
    records = [dict(r) for r in raw_records[:100]]
    records[0]["merchant_category"] = None  # SQL NULL crosses the language boundary too
    records[1]["country_code"] = " zz "
    (tmp_path / "records.json").write_text(json.dumps(records))
    # The entity state Node is given: what the online store holds for these users, as raw records.
    (spec,) = predictor.manifest.entity_state
    keys = sorted({r[spec.key] for r in records})
    held = predictor.store.read(spec, keys)
    epoch = dt.datetime(1970, 1, 1)
    events = {spec.name: {k: [dict(zip(spec.stored, (e[0], (epoch + dt.timedelta(microseconds=e[1])).isoformat(), *e[2:])))
                                  for e in (held[k].row(i) for i in range(len(held[k])))] for k in keys}}
    assert sum(len(v) for v in events[spec.name].values()) > len(keys)  # real history, not only new users
    (tmp_path / "events.json").write_text(json.dumps(events))
    result = subprocess.run(["node", str(EXAMPLE / "score.mjs"), str(bundle), str(tmp_path / "records.json"),
                             str(tmp_path / "events.json")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    node_scores = np.array([json.loads(line)["score"] for line in result.stdout.splitlines()])
    python_scores = Predictor.load(bundle, path="sql", record=False).predict(records).scores
    np.testing.assert_allclose(node_scores, python_scores, rtol=0, atol=1e-6)
    # Same graph, but onnxruntime-node (1.30) and the Python wheel may sum tree leaves in a
    # different order: float32 rounding apart, no more.
    np.testing.assert_allclose(node_scores, predictor.predict(records).scores, rtol=0, atol=1e-6)
