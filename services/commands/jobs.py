"""`switchboard jobs create|get|list|watch|cancel|result`: the job session of the README,
without curl. Plain text for people, `--json` for scripts; exit 0 when it worked, 1 when it
did not (a refused request, an unreachable API, a job that did not succeed), 2 for usage."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from .render import EventPrinter
from .rest import Api, ApiError, JsonObject, base_url, connection_options, snake_to_camel

Handler = Callable[[Api, argparse.Namespace], int]


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    text = "create, follow and read jobs through the public API"
    jobs = sub.add_parser("jobs", help=text, description=text)
    actions = jobs.add_subparsers(dest="action", required=True)
    as_json = argparse.ArgumentParser(add_help=False, parents=[connection_options()])
    as_json.add_argument("--json", action="store_true", help="print JSON for scripts")

    create = actions.add_parser("create", help="create a job", parents=[as_json])
    create.add_argument("pipeline", help="e.g. generate, chat, ingest-document (see /v1/pipelines)")
    create.add_argument(
        "input", help="the pipeline's input as JSON, @FILE for a file of it, - for stdin"
    )
    create.add_argument("--id", default="", help="the job id to use (a retry returns the same job)")
    create.add_argument("--idempotency-key", default="", help="makes retries safe")
    create.add_argument("--label", action="append", default=[], help="KEY=VALUE, repeatable")
    create.add_argument("--webhook-url", default="", help="POSTed a signed notice at the end")
    create.add_argument("--watch", action="store_true", help="follow its events until it ends")
    create.set_defaults(handler=_create)

    for name, handler, help_text in (
        ("get", _get, "show a job"),
        ("cancel", _cancel, "ask a job to stop"),
        ("result", _result, "print a finished job's result"),
    ):
        cmd = actions.add_parser(name, help=help_text, parents=[as_json])
        cmd.add_argument("job", help="a job id or jobs/{id}")
        cmd.set_defaults(handler=handler)

    watch = actions.add_parser("watch", help="follow a job's events live", parents=[as_json])
    watch.add_argument("job", help="a job id or jobs/{id}")
    watch.add_argument("--after", default="", help="resume after this event id (cursor)")
    watch.set_defaults(handler=_watch)

    listing = actions.add_parser("list", help="list your jobs, newest first", parents=[as_json])
    listing.add_argument("--page-size", type=int, default=0, help="jobs per page (max 100)")
    listing.add_argument("--page-token", default="", help="the next_page_token of a page")
    listing.set_defaults(handler=_list)
    jobs.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    api = Api.connect(args)
    try:
        handler: Handler = args.handler
        return handler(api, args)
    except ApiError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except httpx.TransportError as e:
        print(f"cannot reach {base_url(args)}: {e}", file=sys.stderr)
        return 1
    except UsageError as e:
        print(f"switchboard jobs: {e}", file=sys.stderr)
        return 2
    finally:
        api.close()


class UsageError(Exception):
    """A value argparse cannot check (the input's JSON, a label): exit 2."""


def job_id(text: str) -> str:
    return text.removeprefix("jobs/")


def _create(api: Api, args: argparse.Namespace) -> int:
    job: JsonObject = {
        "pipeline": args.pipeline,
        "input": {_input_field(args.pipeline): _input(args.input)},
    }
    if args.label:
        job["labels"] = dict(_label(text) for text in args.label)
    if args.webhook_url:
        job["webhookUrl"] = args.webhook_url
    params = {"job_id": args.id} if args.id else {}
    headers = {"Idempotency-Key": args.idempotency_key} if args.idempotency_key else {}
    created = api.call("POST", "/v1/jobs", body=job, params=params, headers=headers)
    _print_job(created, args.json)
    if args.watch:
        return follow(api, job_id(str(created["name"])), "", as_json=args.json)
    return 0


def _input_field(pipeline: str) -> str:
    """`ingest-document` carries its input in JobInput's `ingestDocument`, and so on."""
    return snake_to_camel(pipeline.replace("-", "_"))


def _input(text: str) -> Any:
    raw = sys.stdin.read() if text == "-" else text
    if text.startswith("@"):
        raw = Path(text[1:]).read_text()
    try:
        return json.loads(raw)
    except json.JSONDecodeError as e:
        raise UsageError(f"the input is not JSON: {e}") from None


def _label(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise UsageError(f"--label wants KEY=VALUE, got {text!r}")
    return key, value


def _get(api: Api, args: argparse.Namespace) -> int:
    _print_job(api.call("GET", f"/v1/jobs/{job_id(args.job)}"), args.json)
    return 0


def _cancel(api: Api, args: argparse.Namespace) -> int:
    _print_job(api.call("POST", f"/v1/jobs/{job_id(args.job)}/cancel", body={}), args.json)
    return 0


def _result(api: Api, args: argparse.Namespace) -> int:
    result = api.call("GET", f"/v1/jobs/{job_id(args.job)}/result")
    texts = [v["text"] for v in result.values() if isinstance(v, dict) and "text" in v]
    if args.json or len(texts) != 1:
        print(json.dumps(result, indent=None if args.json else 2))
    else:
        print(texts[0])
    return 0


def _watch(api: Api, args: argparse.Namespace) -> int:
    return follow(api, job_id(args.job), args.after, as_json=args.json)


def follow(api: Api, job: str, after: str, *, as_json: bool) -> int:
    """Renders the job's events until it ends: 0 when it succeeded, else 1."""
    with EventPrinter(as_json=as_json) as printer:
        for event in api.events(job, after):
            printer.show(event)
    return 0 if printer.ended_state == "SUCCEEDED" else 1


def _list(api: Api, args: argparse.Namespace) -> int:
    params = {"page_size": str(args.page_size)} if args.page_size else {}
    if args.page_token:
        params["page_token"] = args.page_token
    page = api.call("GET", "/v1/jobs", params=params)
    if args.json:
        print(json.dumps(page))
        return 0
    table = Table("job", "pipeline", "state", "created", box=None)
    for job in page.get("jobs", []):
        table.add_row(
            job_id(job.get("name", "")),
            job.get("pipeline", ""),
            job.get("state", ""),
            job.get("createTime", ""),
        )
    Console(highlight=False).print(table)
    if token := page.get("nextPageToken"):
        print(f"more: --page-token {token}")
    return 0


def _print_job(job: JsonObject, as_json: bool) -> None:
    if as_json:
        print(json.dumps(job))
        return
    print(f"{job_id(str(job.get('name', '')))}  {job.get('pipeline', '')}  {job.get('state', '')}")
    if error := job.get("error"):
        print(f"  error: {error.get('message', error)}")
