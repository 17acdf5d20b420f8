"""Deterministic decoupled token streamer for tests and the local mesh.

Token ``i`` is ``words[i % len(words)] + " "`` for the whitespace-split prompt. A generation
stops with ``"stop"`` after ``2 * len(words)`` tokens, with ``"length"`` when ``MAX_TOKENS`` is
smaller, or with ``"cancelled"`` when the client cancels its stream. Every token is one
response carrying ``TEXT``; a last response (``TEXT`` empty) carries ``FINISH_REASON``,
``PROMPT_TOKENS`` and ``COMPLETION_TOKENS`` and the final flag.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils  # type: ignore[import-not-found]


def _text(name: str, value: str) -> Any:
    return pb_utils.Tensor(name, np.array([value.encode("utf-8")], dtype=np.object_))


def _int(name: str, value: int) -> Any:
    return pb_utils.Tensor(name, np.array([value], dtype=np.int32))


def _optional_scalar(request: Any, name: str) -> float | None:
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    return None if tensor is None else float(tensor.as_numpy().reshape(-1)[0])


def _prompt(request: Any) -> str:
    value = pb_utils.get_input_tensor_by_name(request, "PROMPT").as_numpy().reshape(-1)[0]
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


class TritonPythonModel:
    """Each request runs on its own thread so one slow stream never blocks the others."""

    def initialize(self, args: dict[str, str]) -> None:
        self._lock = threading.Lock()
        self._running: set[threading.Thread] = set()

    def execute(self, requests: list[Any]) -> None:
        for request in requests:
            thread = threading.Thread(target=self._serve, args=(request,), daemon=True)
            with self._lock:
                self._running.add(thread)
            thread.start()

    def finalize(self) -> None:
        with self._lock:
            running = list(self._running)
        for thread in running:
            thread.join(timeout=5.0)

    def _serve(self, request: Any) -> None:
        sender = request.get_response_sender()
        try:
            final = self._generate(request, sender)
        except Exception as exc:  # noqa: BLE001 - whatever failed, the stream must still end
            error = pb_utils.TritonError(f"test-streamer: {exc}", pb_utils.TritonError.INVALID_ARG)
            final = pb_utils.InferenceResponse(error=error)
        try:
            sender.send(final, flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        finally:
            with self._lock:
                self._running.discard(threading.current_thread())

    def _generate(self, request: Any, sender: Any) -> Any:
        words = _prompt(request).split()
        max_tokens = _optional_scalar(request, "MAX_TOKENS")
        rate = _optional_scalar(request, "TOKENS_PER_SECOND") or 0.0
        if max_tokens is not None and max_tokens < 0:
            raise ValueError(f"MAX_TOKENS must be >= 0, got {int(max_tokens)}")
        limit, reason = 2 * len(words), "stop"
        if max_tokens is not None and max_tokens < limit:
            limit, reason = int(max_tokens), "length"
        interval = 1.0 / rate if rate > 0 else 0.0
        started, sent = time.monotonic(), 0
        while sent < limit:
            # Pace against the start time so the rate holds however long a send takes.
            time.sleep(max(0.0, started + sent * interval - time.monotonic()))
            if request.is_cancelled():
                reason = "cancelled"
                # Tests read this line to see where the server, not the client, stopped.
                pb_utils.Logger.log_info(
                    f"test-streamer: request {request.request_id()!r} cancelled after {sent} tokens"
                )
                break
            sender.send(pb_utils.InferenceResponse([_text("TEXT", words[sent % len(words)] + " ")]))
            sent += 1
        return pb_utils.InferenceResponse(
            [
                _text("TEXT", ""),
                _text("FINISH_REASON", reason),
                _int("PROMPT_TOKENS", len(words)),
                _int("COMPLETION_TOKENS", sent),
            ]
        )
