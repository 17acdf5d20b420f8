"""KServe-v2 tensors in and out of Triton's protobuf messages (raw contents, no JSON)."""

from __future__ import annotations

from typing import Any

import numpy as np
from tritonclient.utils import serialize_byte_tensor

FINAL_FLAG = "triton_final_response"


def add_input(request: Any, name: str, datatype: str, value: np.ndarray[Any, Any]) -> None:
    request.inputs.add(name=name, datatype=datatype, shape=list(value.shape))
    raw = serialize_byte_tensor(value).item() if datatype == "BYTES" else value.tobytes()
    request.raw_input_contents.append(raw)


def add_bytes(request: Any, name: str, values: list[bytes], *, batched: bool) -> None:
    """One BYTES element per value: shape [n], or [n, 1] for a model with a batch dimension."""
    array = np.array(values, dtype=np.object_)
    add_input(request, name, "BYTES", array.reshape(-1, 1) if batched else array)


def add_scalar(request: Any, name: str, datatype: str, value: Any, dtype: Any) -> None:
    add_input(request, name, datatype, np.array([value], dtype=dtype))


def final_flag(response: Any) -> bool | None:
    """Triton's flag on a decoupled model's responses; None where it sends none."""
    if FINAL_FLAG not in response.parameters:
        return None
    return bool(response.parameters[FINAL_FLAG].bool_param)


def text(result: Any, name: str) -> str | None:
    value = result.as_numpy(name)
    if value is None or value.size == 0:
        return None
    return bytes(value.reshape(-1)[0]).decode("utf-8", errors="replace")


def integer(result: Any, name: str) -> int:
    value = result.as_numpy(name)
    return 0 if value is None or value.size == 0 else int(value.reshape(-1)[0])
