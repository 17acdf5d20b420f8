"""The trace receiver of a local stack (`switchboard up --with tracing`): Arize Phoenix,
an OTLP receiver with a web UI and a REST API over the spans it keeps (docs/adr/0006-*).

Phoenix brings some eighty packages and pins versions the services do not want, so it lives
in an environment of its own that `scripts/setup-tracing` makes outside the checkout; the
stack finds it there (or where SWITCHBOARD_PHOENIX points) and points every service's OTLP
exporter at it.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

from . import checks
from .ports import Ports
from .spec import ProcessSpec

NAME = "tracing"
EXTRAS = (NAME,)
# Pinned: `switchboard trace` reads its REST API (`GET /v1/projects/{p}/spans`).
PHOENIX_VERSION = "20.26.1"
PHOENIX_PROJECT = "default"
# The Python services, which export spans; the binaries (Triton, Temporal, Envoy, Chroma)
# are left to their own configuration.
EXPORTERS = ("edge", "planner", "worker", "inference")


class ReceiverMissing(RuntimeError):
    """Phoenix is not installed where the stack looks for it."""


def phoenix_binary(environ: Mapping[str, str] = os.environ) -> Path:
    """SWITCHBOARD_PHOENIX, else what scripts/setup-tracing installed, else `phoenix` on PATH."""
    if explicit := environ.get("SWITCHBOARD_PHOENIX"):
        return Path(explicit)
    cache = Path(environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    installed = cache / "switchboard" / f"phoenix-{PHOENIX_VERSION}"
    if (installed / ".complete").exists():
        return installed / "bin" / "phoenix"
    if found := shutil.which("phoenix"):
        return Path(found)
    raise ReceiverMissing(
        "Phoenix is not installed: run scripts/setup-tracing (or make setup-tracing)"
    )


def parse_extras(text: str) -> tuple[str, ...]:
    """`--with tracing`: the extras named, each known (else a usage error, exit 2)."""
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    if unknown := [name for name in names if name not in EXTRAS]:
        raise argparse.ArgumentTypeError(
            f"unknown extra {unknown[0]!r}; known: {', '.join(EXTRAS)}"
        )
    return names


def check(ports: Ports) -> checks.Check:
    return checks.http_ok(f"{ui_url(ports)}/healthz")


def ui_url(ports: Ports) -> str:
    return f"http://127.0.0.1:{ports.trace_ui}"


def otlp_endpoint(ports: Ports) -> str:
    return f"http://127.0.0.1:{ports.trace_otlp}"


def spec(ports: Ports, state_dir: Path, environ: Mapping[str, str]) -> ProcessSpec:
    """Phoenix on the stack's two trace ports, its SQLite data in the state folder; it
    loads nothing from the internet (no web fonts, no analytics pixels). Raises
    ReceiverMissing when Phoenix is not installed."""
    binary = phoenix_binary(environ)
    env = {
        **environ,
        "PHOENIX_HOST": "127.0.0.1",
        "PHOENIX_PORT": str(ports.trace_ui),
        "PHOENIX_GRPC_PORT": str(ports.trace_otlp),
        "PHOENIX_WORKING_DIR": str(state_dir / "phoenix"),
        "PHOENIX_TELEMETRY_ENABLED": "false",
        "PHOENIX_ALLOW_EXTERNAL_RESOURCES": "false",
        # Its assistant's server-side shell is not something a trace viewer should offer.
        "PHOENIX_AGENTS_DISABLE_BASH": "true",
    }
    return ProcessSpec(
        NAME,
        lambda: [str(binary), "serve"],
        check(ports),
        env=env,
        ports=(ports.trace_ui, ports.trace_otlp),
        # About 30 s alone on two cores; far longer while Triton and the rest start beside it.
        ready_timeout=300.0,
    )


def with_receiver(
    specs: Sequence[ProcessSpec], ports: Ports, state_dir: Path, environ: Mapping[str, str]
) -> list[ProcessSpec]:
    """`specs` with Phoenix first and the services exporting to it. The services do not wait
    for it: the exporter retries, and a stack is ready only once Phoenix is too."""
    otel = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_endpoint(ports),
        # Spans show in the UI within a second of their end, not the default five.
        "OTEL_BSP_SCHEDULE_DELAY": environ.get("OTEL_BSP_SCHEDULE_DELAY", "500"),
    }

    def exporting(process: ProcessSpec) -> ProcessSpec:
        # Replicas are named after their service: planner-2 exports like planner.
        if process.name.split("-")[0] not in EXPORTERS:
            return process
        return dataclasses.replace(process, env={**process.env, **otel})

    return [spec(ports, state_dir, environ), *(exporting(s) for s in specs)]


def addresses(ports: Ports, names: Sequence[str]) -> list[tuple[str, str]]:
    """The web UIs a person opens, for `status`: Temporal's always, Phoenix's when it ran."""
    found = [("Temporal UI", f"http://127.0.0.1:{ports.temporal_ui}")]
    if NAME in names:
        found.append(("Traces (Phoenix)", ui_url(ports)))
    return found
