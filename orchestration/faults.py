"""Named pause points, so tests can SIGKILL the pipeline at its most delicate moments.

With ``PIPELINE_PAUSE_AT=<name>`` in the environment, the process prints ``paused at <name>``
when it reaches that point and sleeps until it is killed. Unset, a pause point does nothing.

    dbt           dbt has created its first table of an invocation (orchestration/dbt.py)
    publish       the publication is committed; the publish stage is not yet recorded as finished
    train         the model is fitted and exported; the stage has not finished (stages.py)
    bundle_write  a bundle's files are written to a temporary folder, not yet renamed into place
    promote       the registry's new champion pointer is written, not yet swapped in

With ``PIPELINE_FAULT=<name>``, the named fault is injected instead (tests of what must never
crash a run):

    fused_load    the compiled fused graph gains a Where over booleans, which ONNX Runtime has no
                  kernel for (what the old compiler emitted for CASE ... THEN NULL)
"""

from __future__ import annotations

import os
import time

ENV = "PIPELINE_PAUSE_AT"
FAULT_ENV = "PIPELINE_FAULT"


def pause_point(name: str) -> None:
    if os.environ.get(ENV) == name:
        print(f"paused at {name}", flush=True)
        time.sleep(3600)


def fault_injected(name: str) -> bool:
    return os.environ.get(FAULT_ENV) == name


def with_bool_where(model_bytes: bytes) -> bytes:
    """``model_bytes`` plus a ``Where`` on bool tensors as an extra output: valid ONNX that ONNX
    Runtime refuses to load (``NOT_IMPLEMENTED: Could not find an implementation for Where(16)``)."""
    import onnx  # noqa: PLC0415 (only when the fault is injected)
    from onnx import TensorProto, helper  # noqa: PLC0415

    model = onnx.load_from_string(model_bytes)
    graph = model.graph
    flag = helper.make_tensor("fault_flag", TensorProto.BOOL, [1], [True])
    graph.initializer.append(flag)
    graph.node.append(helper.make_node("Where", ["fault_flag", "fault_flag", "fault_flag"], ["fault_where"]))
    graph.output.append(helper.make_tensor_value_info("fault_where", TensorProto.BOOL, [1]))
    return model.SerializeToString()
