"""Our own processes, one spec per replica: the edge, planner, worker and inference services,
and Triton, which our wrapper (`python -m switchboard.inference.triton_launch`) prepares and
then becomes. Each runs as `python -m` with the launcher's interpreter, its settings in its
environment or on its command line, so the launcher imports none of their code."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path

from switchboard.common.settings import Env

from . import checks
from .ports import Ports
from .spec import ProcessSpec, python_module, service_env

# The published development key `sb-dev-key` of client `dev`, given to the edge as its digest.
DEV_API_KEYS = f"sha256:{hashlib.sha256(b'sb-dev-key').hexdigest()}=dev"
# The local mesh signs webhooks with a published development secret and may call receivers
# on this machine; the environment overrides both.
DEV_WEBHOOKS = {
    "SWITCHBOARD_WORKER_WEBHOOK_DEFAULT_SECRET": (
        "whsec_c3dpdGNoYm9hcmQtbG9jYWwtZGV2LXdlYmhvb2tzISE="
    ),
    "SWITCHBOARD_WORKER_WEBHOOK_ALLOW": "127.0.0.1,localhost",
}
# The local mesh opts in to the test models (production ships without them): Triton gets
# their folders, inference their catalog entries, and its canary proves test-streamer, on
# which the README's session, the jobs and the end-to-end tests run. The environment wins.
DEV_TEST_MODELS = {
    "SWITCHBOARD_INFERENCE_TEST_MODELS": "true",
    "SWITCHBOARD_INFERENCE_CANARY_ROUTES": "default-chat,default-embed,test-streamer",
}


def triton(ports: Ports, state_dir: Path, env: Mapping[str, str]) -> ProcessSpec:
    """Triton through its wrapper, which renders the model repository into the state folder
    when it starts and then execs tritonserver: the pid the supervisor holds is Triton's."""
    # The inference replicas' own setting: Triton serves the test models when they route to them.
    test_models = Env({**DEV_TEST_MODELS, **env}, "SWITCHBOARD_INFERENCE").bool(
        "TEST_MODELS", False
    )
    argv = python_module(
        "switchboard.inference.triton_launch",
        f"--state-dir={state_dir / 'triton'}",
        f"--grpc-port={ports.triton_grpc}",
        f"--http-port={ports.triton_http}",
        f"--metrics-port={ports.triton_metrics}",
        *(["--test-models"] if test_models else []),
    )
    return ProcessSpec(
        "triton",
        argv,
        checks.http_ok(f"http://127.0.0.1:{ports.triton_http}/v2/health/ready"),
        env=env,
        ports=(ports.triton_grpc, ports.triton_http),
        ready_timeout=300.0,
    )


def inference(
    name: str, port: int, metrics: int, env: Mapping[str, str], triton: str
) -> ProcessSpec:
    """One inference replica; every replica streams to the one Triton."""
    return ProcessSpec(
        name,
        python_module("switchboard.inference"),
        checks.grpc_serving(f"127.0.0.1:{port}"),
        needs=("triton",),
        env=service_env(
            {**DEV_TEST_MODELS, **env},
            "INFERENCE",
            PORT=port,
            METRICS_PORT=metrics,
            TRITON_GRPC=triton,
        ),
        ports=(port, metrics),
    )


def planner(
    name: str,
    port: int,
    metrics: int,
    env: Mapping[str, str],
    temporal: str,
    valkey_url: str,
    token: str,
) -> ProcessSpec:
    """One planner replica; any replica serves any job (Envoy hashes a job's calls to one)."""
    return ProcessSpec(
        name,
        python_module("switchboard.planner"),
        checks.grpc_serving(f"127.0.0.1:{port}"),
        needs=("temporal", "valkey"),
        env=service_env(
            env,
            "PLANNER",
            PORT=port,
            METRICS_PORT=metrics,
            TEMPORAL_ADDRESS=temporal,
            VALKEY_URL=valkey_url,
            INTERNAL_TOKENS=token,
        ),
        ports=(port, metrics),
    )


def worker(
    name: str,
    metrics: int,
    env: Mapping[str, str],
    temporal: str,
    valkey_url: str,
    inference: str,
    chroma: str,
) -> ProcessSpec:
    """One worker replica; the replicas poll the same task queue, so Temporal shares the
    work among them."""
    return ProcessSpec(
        name,
        python_module("switchboard.planner.worker"),
        checks.http_ok(f"http://127.0.0.1:{metrics}/metrics"),
        needs=("temporal", "valkey", "chroma"),
        env=service_env(
            {**DEV_WEBHOOKS, **env},
            "WORKER",
            METRICS_PORT=metrics,
            TEMPORAL_ADDRESS=temporal,
            VALKEY_URL=valkey_url,
            INFERENCE_ADDRESS=inference,
            CHROMA_URL=chroma,
        ),
        ports=(metrics,),
    )


def edge(
    name: str, port: int, env: Mapping[str, str], planner: str, valkey_url: str, token: str
) -> ProcessSpec:
    """One edge replica; the replicas share API keys and rate limits through Valkey."""
    return ProcessSpec(
        name,
        python_module("switchboard.edge"),
        checks.http_ok(f"http://127.0.0.1:{port}/healthz"),
        needs=("valkey",),
        env=service_env(
            {"SWITCHBOARD_EDGE_API_KEYS": DEV_API_KEYS, **env},
            "EDGE",
            PORT=port,
            PLANNER_ADDRESS=planner,
            # Envoy's gRPC listener routes InferenceService too, hashing on x-session-id.
            INFERENCE_ADDRESS=planner,
            VALKEY_URL=valkey_url,
            INTERNAL_TOKEN=token,
        ),
        ports=(port,),
    )
