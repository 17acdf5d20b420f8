"""Deterministic 8-dimensional embedder for tests: a fixed function of the text's bytes.

The vector is the histogram of the text's UTF-8 bytes folded into 8 buckets (byte % 8),
L2-normalised; the empty string embeds to all zeros. Same I/O as all-minilm-l6-v2, with
dynamic batching, so tests can check that batched rows come back to the right requests.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import triton_python_backend_utils as pb_utils  # type: ignore[import-not-found]

DIM = 8


def echo_embedding(data: bytes) -> npt.NDArray[np.float32]:
    """The [8] float32 vector for one text's UTF-8 bytes."""
    counts = np.bincount(np.frombuffer(data, dtype=np.uint8) % DIM, minlength=DIM)
    vector = counts.astype(np.float32)
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 0 else vector


class TritonPythonModel:
    def execute(self, requests: list[Any]) -> list[Any]:
        responses = []
        for request in requests:
            rows = pb_utils.get_input_tensor_by_name(request, "TEXT").as_numpy().reshape(-1)
            vectors = np.stack([echo_embedding(bytes(row)) for row in rows])
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("EMBEDDING", vectors)]))
        return responses
