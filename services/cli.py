"""`switchboard up | down | status | restart`: the whole local mesh with one command (the
last three in `launcher.stackcli`); `switchboard keys`: the API keys the edges accept;
`switchboard trace`: one job's spans; `switchboard jobs | chat`: the public API."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from importlib.metadata import version
from pathlib import Path

from rich.live import Live

from switchboard.commands import chat as chat_cmd
from switchboard.commands import jobs as jobs_cmd
from switchboard.edge import keys_cli
from switchboard.launcher import receiver, stack, tracecli, ui
from switchboard.launcher.ports import DEFAULT_BASE, Ports, port_free
from switchboard.launcher.replicas import Replicas
from switchboard.launcher.stackcli import RESTART_TIMEOUT, down, restart, status
from switchboard.launcher.supervisor import Supervisor, alive, read_state

__all__ = ["down", "main", "restart", "status", "up"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="switchboard", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {version('switchboard')}")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (
        ("up", "start the mesh and show its state until Ctrl-C"),
        ("down", "stop a running mesh"),
        ("status", "show each process and its health (exit 1 unless all healthy)"),
        ("restart", "restart one process of a running mesh and wait until it is ready"),
    ):
        cmd = sub.add_parser(name, help=text, description=text)
        cmd.add_argument(
            "--base-port",
            type=int,
            default=int(os.environ.get("SWITCHBOARD_BASE_PORT", DEFAULT_BASE)),
            help="first port of the stack's block (env SWITCHBOARD_BASE_PORT)",
        )
        cmd.add_argument("--state-dir", type=Path, help="default .switchboard/stack-<base>")
        if name == "status":
            cmd.add_argument("--json", action="store_true", help="one JSON object, for scripts")
        if name == "restart":
            cmd.add_argument("process", help="e.g. worker, triton (as `status` names them)")
            cmd.add_argument(
                "--timeout",
                type=float,
                default=RESTART_TIMEOUT,
                help=f"seconds to wait until it is ready again (default {RESTART_TIMEOUT:.0f})",
            )
        if name == "up":
            cmd.add_argument("--no-ui", action="store_true", help="plain lines, no live table")
            cmd.add_argument(
                "--only",
                help="comma-separated processes to start, with what they need "
                "(e.g. valkey,temporal to run the services from an IDE)",
            )
            cmd.add_argument(
                "--replicas",
                type=_replicas,
                default=Replicas(),
                help="replicas per service, e.g. planner=2,inference=2,worker=2,edge=3 "
                "(default edge=2, the others 1); the extra ones are named planner-2, ...",
            )
            cmd.add_argument(
                "--with",
                dest="extras",
                type=receiver.parse_extras,
                default=os.environ.get("SWITCHBOARD_WITH", ""),
                help="extras to run too: tracing (Phoenix, the services export spans to it; "
                "env SWITCHBOARD_WITH)",
            )
    stack_port = argparse.ArgumentParser(add_help=False)
    stack_port.add_argument(
        "--base-port",
        type=int,
        default=int(os.environ.get("SWITCHBOARD_BASE_PORT", DEFAULT_BASE)),
        help="the local stack whose Valkey to use (env SWITCHBOARD_BASE_PORT)",
    )
    keys_cli.add_parser(sub, default_valkey=_stack_valkey, parents=[stack_port])
    jobs_cmd.add_parser(sub)
    chat_cmd.add_parser(sub)
    tracecli.add_parser(sub, parents=[stack_port])
    return parser


def _stack_valkey(args: argparse.Namespace) -> tuple[str, str]:
    """`switchboard keys` without --valkey-url: the Valkey of the local stack on --base-port."""
    port: int = args.base_port
    return f"valkey://127.0.0.1:{Ports.at(port).valkey}/0", f"the local stack on {port}"


def _replicas(text: str) -> Replicas:
    try:
        return Replicas.parse(text)
    except ValueError as e:
        # argparse turns this into a usage error (exit 2) with the message.
        raise argparse.ArgumentTypeError(str(e)) from None


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if run := getattr(args, "run", None):  # jobs, chat: over the public API
        return int(run(args))
    if args.command == "keys":
        return keys_cli.run(args)
    if args.command == "trace":
        return tracecli.run(args)
    ports = Ports.at(args.base_port)
    state_dir: Path = args.state_dir.resolve() if args.state_dir else stack.default_state_dir(ports)
    if args.command == "up":
        only = [n.strip() for n in args.only.split(",")] if args.only else None
        live = not args.no_ui and sys.stdout.isatty()
        return up(
            ports,
            state_dir,
            os.environ,
            live=live,
            only=only,
            replicas=args.replicas,
            extras=args.extras,
        )
    if args.command == "down":
        return down(state_dir)
    if args.command == "restart":
        return restart(state_dir, args.process, args.timeout)
    return asyncio.run(status(ports, state_dir, os.environ, as_json=args.json))


def _busy(ports: Ports, replicas: Replicas) -> list[int]:
    wanted = dict.fromkeys([*ports.all(), *replicas.all_ports(ports)])
    return [port for port in wanted if not port_free(port)]


def up(
    ports: Ports,
    state_dir: Path,
    environ: Mapping[str, str],
    *,
    live: bool,
    only: Sequence[str] | None = None,
    replicas: Replicas | None = None,
    extras: Sequence[str] = (),
) -> int:
    replicas = replicas or Replicas()
    previous = read_state(state_dir)
    if previous and alive(previous.get("supervisor_pid")):
        print(f"a stack already runs from {state_dir}; `switchboard down` first", file=sys.stderr)
        return 1
    if busy := _busy(ports, replicas):
        print(f"ports in use: {busy}; pick another --base-port", file=sys.stderr)
        return 1
    state_dir.mkdir(parents=True, exist_ok=True)
    token = stack.write_internal_token(state_dir)
    specs = stack.build(ports, state_dir, environ, internal_token=token, replicas=replicas)
    if receiver.NAME in extras:
        try:
            specs = receiver.with_receiver(specs, ports, state_dir, environ)
        except receiver.ReceiverMissing as e:
            print(e, file=sys.stderr)
            return 1
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


if __name__ == "__main__":
    sys.exit(main())
