"""Refuse ONNX models that reference external data, without importing the ``onnx`` package.

An ONNX file may keep tensors in side files (``TensorProto.data_location = EXTERNAL`` with
``external_data`` entries naming a path). A bundle is self-contained and its files are verified
against its id, so a model that points at other files is refused before ONNX Runtime sees it.
This walks the protobuf wire format over every message that can hold a tensor: the graph, the
functions (and their attribute defaults) and the training graphs (``training_info``), nested
through node attributes and subgraphs.
"""

from __future__ import annotations

from serving.errors import BundleError

# Message type -> {field number: message type of that (length-delimited) field}.
_TENSOR_HOLDERS: dict[str, dict[int, str]] = {
    "model": {7: "graph", 20: "training", 25: "function"},  # ModelProto.graph, .training_info, .functions
    "training": {1: "graph", 2: "graph"},            # TrainingInfoProto.initialization, .algorithm
    "function": {7: "node", 11: "attribute"},        # FunctionProto.node, .attribute_proto (defaults)
    "graph": {1: "node", 5: "tensor", 15: "sparse"},  # GraphProto.node, .initializer, .sparse_initializer
    "node": {5: "attribute"},                        # NodeProto.attribute
    "attribute": {5: "tensor", 6: "graph", 10: "tensor", 11: "graph", 22: "sparse", 23: "sparse"},
    "sparse": {1: "tensor", 2: "tensor"},            # SparseTensorProto.values, .indices
    "tensor": {},
}
_TENSOR_EXTERNAL_DATA = 13  # TensorProto.external_data
_TENSOR_DATA_LOCATION = 14  # TensorProto.data_location; EXTERNAL = 1
_MAX_DEPTH = 64


class _Malformed(Exception):
    pass


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise _Malformed("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _fields(buf: memoryview):
    """Yield (field number, wire type, value) with value an int or a memoryview slice."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = None, pos + 8
        elif wire == 5:
            value, pos = None, pos + 4
        elif wire == 2:
            length, pos = _varint(buf, pos)
            value, pos = buf[pos:pos + length], pos + length
        else:
            raise _Malformed(f"unsupported wire type {wire}")
        if pos > len(buf):
            raise _Malformed("truncated field")
        yield number, wire, value


def _scan(buf: memoryview, kind: str, depth: int) -> str | None:
    if depth > _MAX_DEPTH:
        raise _Malformed("messages nested too deeply")
    holders = _TENSOR_HOLDERS[kind]
    for number, wire, value in _fields(buf):
        if kind == "tensor" and (number == _TENSOR_EXTERNAL_DATA or (number == _TENSOR_DATA_LOCATION and value == 1)):
            return "a tensor stores its data in an external file"
        if wire == 2 and number in holders:
            found = _scan(value, holders[number], depth + 1)
            if found:
                return found
    return None


def check_no_external_data(model_bytes: bytes, where: str) -> None:
    """Raise ``BundleError`` if the ONNX model references external data or is not valid protobuf."""
    try:
        found = _scan(memoryview(model_bytes), "model", 0)
    except _Malformed as exc:
        raise BundleError(f"{where}: model.onnx is not a valid ONNX protobuf ({exc}); rebuild the bundle") from None
    if found:
        raise BundleError(
            f"{where}: model.onnx references external data ({found}); bundles must be self-contained. "
            "Re-export the model with all tensors embedded (onnx.save(..., save_as_external_data=False))."
        )
