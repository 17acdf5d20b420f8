"""Record JobWorkflow histories for the replay test (`tests/planner/test_replay.py`).

    .venv/bin/python scripts/record_histories.py [OUT_DIR] [NAME ...]
    # OUT_DIR defaults to tests/planner/histories; NAMEs to every run (history_runs.py); each is
    # written as <name>_<GENERATION>.json

It starts Temporal, Valkey and Chroma as `switchboard up --only valkey,temporal,chroma` does,
the planner server and worker (chat and document activities included) in this process, and
the tests' fake inference service; it runs a few
representative jobs to their end and writes each workflow's history as `<name>.json`.

A history already in OUT_DIR is kept, not re-recorded: the old ones are the runs that began
before a patch (`workflow.patched`) and must still replay. After a deliberate, versioned
change, set GENERATION to the new patch's id and record every run again under the new names
(the runs and GENERATION are in `history_runs.py`; new kinds of run go into RUNS); delete a
file only when no run of its kind can still be open anywhere. An accidental change of the
workflow's commands is what the replay test catches. (Files without a suffix are the
generations before `local-events`.)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
from history_runs import GENERATION, RUNS
from temporalio.client import Client
from valkey.asyncio import Valkey

from switchboard.api.inference.v1 import inference_pb2_grpc
from switchboard.common.jobref import JobRef
from switchboard.launcher import background
from switchboard.launcher.ports import free_block
from switchboard.planner.process import connect_temporal
from switchboard.planner.stores.chats import ChatSessions
from switchboard.planner.stores.events import EventLog
from switchboard.planner.work.activities import Activities
from switchboard.planner.work.chat import ChatActivities
from switchboard.planner.work.documents import Documents
from switchboard.planner.work.vectors import VectorStore
from switchboard.planner.work.worker import build_worker
from tests.planner.fake_inference import FakeInference
from tests.planner.support import WAIT_S, running_planner

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "tests" / "planner" / "histories"


@contextlib.asynccontextmanager
async def running_worker(
    client: Client, valkey: Valkey, inference: str, chroma_url: str, queue: str
) -> AsyncIterator[None]:
    """The worker as `worker.run` builds it: the chat and document activities included."""
    channel = grpc.aio.insecure_channel(inference)
    stub = inference_pb2_grpc.InferenceServiceStub(channel)
    log, vectors = EventLog(valkey), VectorStore(chroma_url)
    worker = build_worker(
        client,
        queue,
        Activities(stub, log),
        grace_seconds=1.0,
        chat=ChatActivities(ChatSessions(valkey)),
        documents=Documents(stub, log, vectors),
    )
    try:
        async with worker:
            yield
    finally:
        await vectors.close()
        await channel.close(grace=None)


async def record(temporal: str, valkey: str, chroma_url: str, out: Path, names: list[str]) -> None:
    client = await connect_temporal(temporal, "default", wait_seconds=30)
    valkey_client = Valkey.from_url(f"valkey://{valkey}/0")
    fake = FakeInference()
    server = grpc.aio.server()
    inference_pb2_grpc.add_InferenceServiceServicer_to_server(fake, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    queue = f"record-{uuid.uuid4().hex}"
    try:
        async with (
            running_planner(client, valkey_client, fake, queue) as planner,
            running_worker(client, valkey_client, f"127.0.0.1:{port}", chroma_url, queue),
        ):
            for name in names:
                job = await RUNS[name](planner)
                wid = JobRef.from_name(planner.client_id, job).workflow_id
                handle = client.get_workflow_handle(wid)
                # The webhook activity runs after the terminal event: wait for the end.
                async with asyncio.timeout(WAIT_S):
                    await handle.result()
                history = await handle.fetch_history()
                (out / _file(name)).write_text(_scrubbed(history.to_json()) + "\n")
                print(f"recorded {name}: {len(history.events)} events", flush=True)
    finally:
        await valkey_client.aclose()
        await server.stop(0)


def _file(name: str) -> str:
    return f"{name}_{GENERATION}.json"


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_OUT
    unknown = set(sys.argv[2:]) - set(RUNS)
    if unknown:
        sys.exit(f"unknown runs {sorted(unknown)}; known: {sorted(RUNS)}")
    out.mkdir(parents=True, exist_ok=True)
    kept = [n for n in sys.argv[2:] or RUNS if (out / _file(n)).exists()]
    names = [n for n in sys.argv[2:] or RUNS if n not in kept]
    if kept:
        print(f"kept (delete to re-record): {', '.join(kept)}", flush=True)
    if not names:
        return
    with tempfile.TemporaryDirectory(prefix="record-histories-") as state:
        ports = free_block()
        stack = background.start(Path(state), ports, ("valkey", "temporal", "chroma"))
        try:
            temporal, valkey = f"127.0.0.1:{ports.temporal}", f"127.0.0.1:{ports.valkey}"
            chroma = f"http://127.0.0.1:{ports.chroma}"
            asyncio.run(record(temporal, valkey, chroma, out, names))
        finally:
            stack.stop()


def _scrubbed(history_json: str) -> str:
    """Drops failure stack traces: they name this machine's paths and replay ignores them."""

    def scrub(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: ("" if k == "stackTrace" else scrub(v)) for k, v in node.items()}
        if isinstance(node, list):
            return [scrub(v) for v in node]
        return node

    return json.dumps(scrub(json.loads(history_json)), indent=2)


if __name__ == "__main__":
    main()
