"""A tiny ONNX model with the interface of OpenCV's YuNet (face_detection_yunet_2023mar.onnx).

The real model comes from the OpenCV model zoo and cannot be downloaded in tests, so this
builds a stand-in that `cv2.FaceDetectorYN` runs exactly like the real one:

* input ``input``: float NCHW [1, 3, H, W], BGR 0..255 (FaceDetectorYN pads H, W up to a
  multiple of 32 and calls ``blobFromImage`` without scaling or mean);
* outputs ``cls_s``, ``obj_s`` [1, N, 1], ``bbox_s`` [1, N, 4], ``kps_s`` [1, N, 10] for
  strides s = 8, 16, 32, with N = (H/s) * (W/s) anchor cells in row-major order.

OpenCV decodes cell (row r, col c) of stride s as score = sqrt(clamp(cls) * clamp(obj)),
centre = ((c + dx) * s, (r + dy) * s), size = (exp(lw) * s, exp(lh) * s).

The stand-in "detects" red squares: cls_32 is the mean red level (0..1) of each 32x32 cell
(channel 2 of the BGR blob, so it also tells whether the caller converted RGB to BGR),
obj_32 is the constant `OBJ`, and every cell's box is the constant offset `BBOX`. A pure red
32x32 square on the 32-pixel grid at cell (r, c) of a black image thus gives exactly one
face, with score sqrt(OBJ) and box `expected_box(r, c)`; blue or green squares give none.
Strides 8 and 16 score 0 everywhere. Every output is a strided Conv over the input, so the
model follows whatever size setInputSize gives (any width and height).

ONNX is written as raw protobuf (field numbers from onnx/onnx.proto): neither the `onnx`
package nor torch's exporter (which needs `onnx`) is required.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

STRIDES = (8, 16, 32)
CHANNELS = {"cls": 1, "obj": 1, "bbox": 4, "kps": 10}
OBJ = 0.81  # objectness everywhere: a pure red cell scores sqrt(1 * 0.81) = 0.9
SCORE = math.sqrt(OBJ)
BBOX = (0.5, 0.5, 0.0, math.log(1.25))  # dx, dy (cells), log w, log h (strides): 32 x 40 box on the cell centre
FLOAT, INT64 = 1, 7  # TensorProto.DataType
ATTR_INTS = 7  # AttributeProto.AttributeType


def expected_box(row: int, col: int, stride: int = 32) -> tuple[float, float, float, float]:
    """(x, y, w, h) OpenCV decodes for a detection in cell (row, col): what YuNetDetector must return."""
    dx, dy, lw, lh = BBOX
    w, h = math.exp(lw) * stride, math.exp(lh) * stride
    return ((col + dx) * stride - w / 2, (row + dy) * stride - h / 2, w, h)


# ------------------------------------------------------------------ protobuf wire format
def _varint(value: int) -> bytes:
    out = bytearray()
    value &= (1 << 64) - 1  # int64 negatives are 10-byte two's complement varints
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _int(field: int, value: int) -> bytes:
    return _varint(field << 3) + _varint(value)


def _bytes(field: int, payload: bytes | str) -> bytes:
    data = payload.encode() if isinstance(payload, str) else payload
    return _varint((field << 3) | 2) + _varint(len(data)) + data


def _tensor(name: str, array: np.ndarray) -> bytes:
    """TensorProto: dims=1, data_type=2, name=8, raw_data=9 (little-endian)."""
    dtype = {np.dtype(np.float32): FLOAT, np.dtype(np.int64): INT64}[array.dtype]
    dims = b"".join(_int(1, d) for d in array.shape)
    return dims + _int(2, dtype) + _bytes(8, name) + _bytes(9, array.astype(array.dtype.newbyteorder("<")).tobytes())


def _ints_attr(name: str, values: tuple[int, ...]) -> bytes:
    """AttributeProto: name=1, ints=8 (one entry each), type=20."""
    return _bytes(1, name) + b"".join(_int(8, v) for v in values) + _int(20, ATTR_INTS)


def _node(op: str, inputs: list[str], outputs: list[str], attrs: tuple[bytes, ...] | list[bytes] = ()) -> bytes:
    """NodeProto: input=1, output=2, name=3, op_type=4, attribute=5."""
    body = b"".join(_bytes(1, i) for i in inputs) + b"".join(_bytes(2, o) for o in outputs)
    return body + _bytes(3, f"{op}_{outputs[0]}") + _bytes(4, op) + b"".join(_bytes(5, a) for a in attrs)


def _value_info(name: str, dims: tuple[int | str, ...] | None) -> bytes:
    """ValueInfoProto{name=1, type=2: TypeProto{tensor_type=1: {elem_type=1, shape=2: {dim=1}}}}."""
    tensor_type = _int(1, FLOAT)
    if dims is not None:
        shape = b"".join(_bytes(1, _bytes(2, d) if isinstance(d, str) else _int(1, d)) for d in dims)
        tensor_type += _bytes(2, shape)
    return _bytes(1, name) + _bytes(2, _bytes(1, tensor_type))


# ------------------------------------------------------------------ the model
def _weights(kind: str, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """Conv weight [C, 3, s, s] and bias [C] for one output: constants, except cls_32 = cell redness."""
    c = CHANNELS[kind]
    weight = np.zeros((c, 3, stride, stride), np.float32)
    bias = np.zeros(c, np.float32)
    if kind == "cls" and stride == 32:
        weight[:, 2] = 1.0 / (stride * stride * 255.0)  # mean of R (BGR channel 2) over the cell, 0..1
    elif kind == "obj" and stride == 32:
        bias[:] = OBJ
    elif kind == "bbox":
        bias[:] = BBOX
    elif kind == "kps":
        bias[:] = 0.5  # all five landmarks on the cell centre
    return weight, bias


def yunet_model_bytes() -> bytes:
    """Serialized ModelProto of the red-square YuNet stand-in."""
    nodes: list[bytes] = []
    inits: list[bytes] = []
    outputs: list[bytes] = []
    for kind in CHANNELS:  # output order as in the zoo model; OpenCV fetches them by name anyway
        for s in STRIDES:
            name, c = f"{kind}_{s}", CHANNELS[kind]
            weight, bias = _weights(kind, s)
            inits += [_tensor(f"{name}_w", weight), _tensor(f"{name}_b", bias)]
            inits.append(_tensor(f"{name}_shape", np.array([1, -1, c], np.int64)))
            conv = [_ints_attr("kernel_shape", (s, s)), _ints_attr("strides", (s, s))]
            nodes.append(_node("Conv", ["input", f"{name}_w", f"{name}_b"], [f"{name}_map"], conv))
            nodes.append(_node("Transpose", [f"{name}_map"], [f"{name}_hwc"], [_ints_attr("perm", (0, 2, 3, 1))]))
            nodes.append(_node("Reshape", [f"{name}_hwc", f"{name}_shape"], [name]))
            outputs.append(_value_info(name, (1, f"cells_{s}", c)))
    graph = (
        b"".join(_bytes(1, n) for n in nodes)
        + _bytes(2, "yunet_stand_in")
        + b"".join(_bytes(5, t) for t in inits)
        + _bytes(11, _value_info("input", (1, 3, "height", "width")))
        + b"".join(_bytes(12, o) for o in outputs)
    )
    opset = _bytes(1, "") + _int(2, 13)
    return _int(1, 7) + _bytes(2, "tests.yunet_onnx") + _bytes(7, graph) + _bytes(8, opset)


def write_yunet_model(path: Path) -> Path:
    """Write the stand-in model to `path` and return it."""
    path.write_bytes(yunet_model_bytes())
    return path
