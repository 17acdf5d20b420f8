"""A decoupled model that never answers until its request is cancelled, for timeout tests.

Each request waits on its own thread, polling ``is_cancelled()`` every 20 ms; once
cancelled it ends the stream with the final flag and no data. When the model unloads,
requests still waiting end with an UNAVAILABLE error so Triton can shut down.
"""

from __future__ import annotations

import threading
from typing import Any

import triton_python_backend_utils as pb_utils  # type: ignore[import-not-found]

POLL_S = 0.02


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        self._unloading = threading.Event()
        self._lock = threading.Lock()
        self._waiting: set[threading.Thread] = set()

    def execute(self, requests: list[Any]) -> None:
        for request in requests:
            thread = threading.Thread(target=self._hang, args=(request,), daemon=True)
            with self._lock:
                self._waiting.add(thread)
            thread.start()

    def finalize(self) -> None:
        self._unloading.set()
        with self._lock:
            waiting = list(self._waiting)
        for thread in waiting:
            thread.join(timeout=5.0)

    def _hang(self, request: Any) -> None:
        sender = request.get_response_sender()
        try:
            while not request.is_cancelled():
                if self._unloading.wait(POLL_S):
                    error = pb_utils.TritonError(
                        "test-hang: model unloading", pb_utils.TritonError.UNAVAILABLE
                    )
                    sender.send(
                        pb_utils.InferenceResponse(error=error),
                        flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL,
                    )
                    return
            # Tests read this line to see that the server, not only the client, stopped.
            pb_utils.Logger.log_info(f"test-hang: request {request.request_id()!r} cancelled")
            sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        finally:
            with self._lock:
                self._waiting.discard(threading.current_thread())
