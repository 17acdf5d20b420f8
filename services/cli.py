"""`switchboard up | down | status`: the whole local mesh with one command; `switchboard keys`:
the API keys the edges accept."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path

from rich.live import Live

from switchboard.edge import keys_cli
from switchboard.launcher import stack, ui
from switchboard.launcher.ports import DEFAULT_BASE, Ports, port_free
from switchboard.launcher.supervisor import Supervisor, alive, kill_group, read_state


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="switchboard", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (
        ("up", "start the mesh and show its state until Ctrl-C"),
        ("down", "stop a running mesh"),
        ("status", "show each process and its health (exit 1 unless all healthy)"),
    ):
        cmd = sub.add_parser(name, help=text, description=text)
        cmd.add_argument(
            "--base-port",
            type=int,
            default=int(os.environ.get("SWITCHBOARD_BASE_PORT", DEFAULT_BASE)),
            help="first port of the stack's block (env SWITCHBOARD_BASE_PORT)",
        )
        cmd.add_argument("--state-dir", type=Path, help="default .switchboard/stack-<base>")
        if name == "up":
            cmd.add_argument("--no-ui", action="store_true", help="plain lines, no live table")
            cmd.add_argument(
                "--only",
                help="comma-separated processes to start, with what they need "
                "(e.g. valkey,temporal to run the services from an IDE)",
            )
    keys_cli.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "keys":
        return keys_cli.run(args)
    ports = Ports.at(args.base_port)
    state_dir: Path = args.state_dir.resolve() if args.state_dir else stack.default_state_dir(ports)
    if args.command == "up":
        only = [n.strip() for n in args.only.split(",")] if args.only else None
        live = not args.no_ui and sys.stdout.isatty()
        return up(ports, state_dir, os.environ, live=live, only=only)
    if args.command == "down":
        return down(state_dir)
    return asyncio.run(status(ports, state_dir, os.environ))


def _busy(ports: Ports) -> list[int]:
    return [port for port in ports.all() if not port_free(port)]


def up(
    ports: Ports,
    state_dir: Path,
    environ: Mapping[str, str],
    *,
    live: bool,
    only: Sequence[str] | None = None,
) -> int:
    previous = read_state(state_dir)
    if previous and alive(previous.get("supervisor_pid")):
        print(f"a stack already runs from {state_dir}; `switchboard down` first", file=sys.stderr)
        return 2
    if busy := _busy(ports):
        print(f"ports in use: {busy}; pick another --base-port", file=sys.stderr)
        return 2
    state_dir.mkdir(parents=True, exist_ok=True)
    token = stack.write_internal_token(state_dir)
    specs = stack.build(ports, state_dir, environ, internal_token=token)
    if only is not None:
        try:
            specs = stack.select(specs, only)
        except KeyError as e:
            print(f"unknown process {e}; known: {[s.name for s in specs]}", file=sys.stderr)
            return 2
    state_dir.mkdir(parents=True, exist_ok=True)
    return asyncio.run(_run(specs, state_dir, ports, live))


async def _run(specs: list[stack.ProcessSpec], state_dir: Path, ports: Ports, live: bool) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    title = f"switchboard (public http://127.0.0.1:{ports.public}, grpc 127.0.0.1:{ports.grpc})"
    if not live:
        printer = ui.LinePrinter()
        sup = Supervisor(
            specs, state_dir, ports.base, lambda s: printer.update(s.stack_state, _rows(s))
        )
        return await sup.run(stop)
    with Live(ui.table(title, []), console=ui.console(), refresh_per_second=4) as view:
        sup = Supervisor(specs, state_dir, ports.base)

        def render(_: object = None) -> None:
            view.update(ui.table(f"{title}: {sup.stack_state}", _rows(sup)))

        sup.on_change = render
        ticker = asyncio.create_task(_tick(render))
        try:
            return await sup.run(stop)
        finally:
            ticker.cancel()


async def _tick(render: object) -> None:
    while True:  # keeps the "up" column moving between state changes
        await asyncio.sleep(1)
        if callable(render):
            render()


def _rows(sup: Supervisor) -> list[Mapping[str, object]]:
    return [asdict(p) for p in sup.procs.values()]


def down(state_dir: Path, timeout: float = 60.0) -> int:
    state = read_state(state_dir)
    if state is None:
        print(f"no stack state in {state_dir}", file=sys.stderr)
        return 1
    pid = state.get("supervisor_pid")
    if alive(pid) and isinstance(pid, int):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
    # A supervisor that was killed outright cannot stop its children: do it here.
    procs = state.get("processes")
    for proc in procs.values() if isinstance(procs, dict) else ():
        if isinstance(proc, dict) and alive(proc.get("pid")):
            kill_group(int(proc["pid"]), signal.SIGKILL)
    print("stopped")
    return 0


async def status(ports: Ports, state_dir: Path, environ: Mapping[str, str]) -> int:
    state = read_state(state_dir)
    if state is None:
        print(f"no stack has run from {state_dir}")
        return 1
    running = alive(state.get("supervisor_pid"))
    checks = {spec.name: spec.check for spec in stack.build(ports, state_dir, environ)}
    procs = state.get("processes")
    rows: list[Mapping[str, object]] = []
    healthy = running
    for name, proc in procs.items() if isinstance(procs, dict) else ():
        row: dict[str, object] = dict(proc)
        if not alive(row.get("pid")):
            row["state"] = "dead" if running else str(row.get("state"))
            healthy = False
        elif name in checks:
            ok = await checks[name]()
            row["state"] = "healthy" if ok else "unhealthy"
            healthy = healthy and ok
        rows.append(row)
    stack_state = state.get("state") if running else "not running"
    ui.console().print(ui.table(f"switchboard stack {ports.base}: {stack_state}", rows))
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
