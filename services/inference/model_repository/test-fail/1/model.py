"""A model that always fails, so clients can test how Triton errors reach them."""

from __future__ import annotations

from typing import Any

import triton_python_backend_utils as pb_utils  # type: ignore[import-not-found]

MESSAGE = "test-fail: this model always fails (deliberate error for testing)"


class TritonPythonModel:
    def execute(self, requests: list[Any]) -> list[Any]:
        return [pb_utils.InferenceResponse(error=pb_utils.TritonError(MESSAGE)) for _ in requests]
