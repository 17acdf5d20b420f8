"""`switchboard chat`: an interactive chat over the `chat` pipeline. Each line is one chat
job in the same session, so the model sees the session's earlier turns (the pipeline keeps
them); its tokens print as they come. Ctrl-C stops the reply being generated (the job is
cancelled) and keeps the chat open; Ctrl-D leaves."""

from __future__ import annotations

import argparse
import sys
import uuid

import httpx

from .jobs import job_id
from .render import EventPrinter
from .rest import Api, ApiError, JsonObject, base_url, connection_options

DEFAULT_MODEL = "default-chat"
PROMPT = "you> "


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    text = "chat with a model; Ctrl-C stops a reply, Ctrl-D exits"
    chat = sub.add_parser("chat", help=text, description=text, parents=[connection_options()])
    chat.add_argument("--session", default="", help="continue this session (default: a new one)")
    chat.add_argument("--model", default=DEFAULT_MODEL, help=f"default {DEFAULT_MODEL}")
    chat.add_argument("--system", default="", help="instructions placed before the session")
    chat.add_argument("--max-tokens", type=int, default=0, help="per reply (0: the model's)")
    chat.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    session = args.session or f"cli-{uuid.uuid4().hex[:12]}"
    print(f"session {session}; Ctrl-C stops a reply, Ctrl-D exits", file=sys.stderr)
    api = Api.connect(args)
    try:
        while (line := _read_line()) is not None:
            if not line.strip():
                continue
            try:
                _turn(api, args, session, line)
            except ApiError as e:  # this message failed; the chat goes on
                print(f"error: {e}", file=sys.stderr)
        return 0
    except httpx.TransportError as e:
        print(f"cannot reach {base_url(args)}: {e}", file=sys.stderr)
        return 1
    finally:
        api.close()


def _read_line() -> str | None:
    """The next message; None at end of input (Ctrl-D). Ctrl-C here clears the line."""
    while True:
        try:
            return input(PROMPT)
        except EOFError:
            print(file=sys.stderr)
            return None
        except KeyboardInterrupt:
            print(file=sys.stderr)


def _turn(api: Api, args: argparse.Namespace, session: str, message: str) -> None:
    given: JsonObject = {"sessionId": session, "model": args.model, "message": message}
    if args.system:
        given["system"] = args.system
    if args.max_tokens:
        given["params"] = {"maxTokens": args.max_tokens}
    printer, job = EventPrinter(as_json=False, show_states=False), ""
    try:
        created = api.call("POST", "/v1/jobs", body={"pipeline": "chat", "input": {"chat": given}})
        job = job_id(str(created["name"]))
        for event in api.events(job):
            printer.show(event)
    except KeyboardInterrupt:
        printer.close()
        if job:
            api.call("POST", f"/v1/jobs/{job}/cancel", body={})
        print("[stopped]", file=sys.stderr)
        return
    printer.close()
    if printer.ended_state != "SUCCEEDED":
        print(f"[{printer.ended_state.lower() or 'ended'}]", file=sys.stderr)
