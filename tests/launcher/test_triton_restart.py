"""The inference service serves again by itself after Triton is killed and the supervisor
restarts it: nothing restarts inference, its channel to Triton reconnects."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from switchboard.api.inference.v1 import inference_pb2 as pb
from switchboard.api.inference.v1 import inference_pb2_grpc
from switchboard.launcher import leftovers
from switchboard.launcher.ports import free_block

from ..stack import start_stack

# Triton reloads every model after its restart (SmolLM2, MiniLM, PP-OCR): minutes on 2 cores.
RECOVERY_S = 360.0


def _procs(state_dir: Path) -> dict[str, Any]:
    procs = json.loads((state_dir / "state.json").read_text())["processes"]
    assert isinstance(procs, dict)
    return procs


def _embed(stub: Any) -> pb.EmbedResponse:
    reply: pb.EmbedResponse = stub.Embed(
        pb.EmbedRequest(model="default-embed", texts=["hello again"]), timeout=10
    )
    return reply


def _generate(stub: Any) -> list[pb.GenerateResponse]:
    start = pb.GenerateStart(model="test-streamer", prompt="one two three")
    requests: Iterator[pb.GenerateRequest] = iter([pb.GenerateRequest(request_id="r", start=start)])
    return list(stub.Generate(requests, timeout=20))


def _serving(channel: grpc.Channel) -> None:
    reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


def _until(what: str, deadline: float, attempt: Any) -> Any:
    while True:
        try:
            return attempt()
        except (grpc.RpcError, AssertionError, KeyError, ValueError, OSError) as e:
            if time.monotonic() > deadline:
                pytest.fail(f"{what}: {e!r}")
        time.sleep(0.5)


@pytest.mark.timeout(900)
def test_inference_serves_again_after_triton_is_killed(tmp_path: Path) -> None:
    ports = free_block()
    stack = start_stack(tmp_path / "stack", ports, only=("inference",))
    try:
        with grpc.insecure_channel(f"127.0.0.1:{ports.inference}") as channel:
            stub = inference_pb2_grpc.InferenceServiceStub(channel)
            assert len(_embed(stub).embeddings) == 1
            before = _procs(stack.state_dir)
            regions = leftovers.shared_memory(before["triton"]["pid"])
            assert regions, "Triton's stubs share memory with it"
            os.killpg(before["triton"]["pid"], signal.SIGKILL)
            deadline = time.monotonic() + RECOVERY_S

            def triton_back() -> None:
                # Calls during the outage fail (and may open the model's breaker).
                with contextlib.suppress(grpc.RpcError):
                    _embed(stub)
                triton = _procs(stack.state_dir)["triton"]
                assert triton["pid"] != before["triton"]["pid"] and triton["state"] == "ready"
                assert triton["restarts"] == 1 and triton["last_exit"] == -signal.SIGKILL

            _until("Triton was not restarted", deadline, triton_back)
            assert not [r for r in regions if r.exists()], "the killed stubs' memory is gone"

            def embeds() -> None:
                assert len(_embed(stub).embeddings[0].values) == 384

            def generates() -> None:
                events = _generate(stub)
                assert [e.WhichOneof("event") for e in events][-1] == "done", events
                assert "".join(e.delta.text for e in events) != ""

            _until("inference did not embed again", deadline, embeds)
            _until("inference did not generate again", deadline, generates)
            _until("inference is not SERVING again", deadline, lambda: _serving(channel))
            inference = _procs(stack.state_dir)["inference"]
            assert inference["pid"] == before["inference"]["pid"], "inference was not restarted"
            assert inference["restarts"] == 0 and inference["state"] == "ready"
    finally:
        stack.stop()
