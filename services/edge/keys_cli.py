"""`switchboard keys create | list | revoke`: the API keys every edge replica accepts.

Keys live in Valkey (switchboard.edge.keys). `--valkey-url` names it; without it, the Valkey
of the local stack on `--base-port` (as `up` and `status` find theirs). A new key is printed
once, alone on stdout so scripts can capture it; only its SHA-256 is stored. `list` and
`revoke` name keys by fingerprint, never by the key.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from valkey import exceptions as valkey_errors
from valkey.asyncio import Valkey

from switchboard.launcher.ports import DEFAULT_BASE, Ports

from .keys import KeyStore

TIMEOUT_SECONDS = 5.0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    where = argparse.ArgumentParser(add_help=False)
    where.add_argument("--valkey-url", help="the Valkey holding the keys (default: local stack)")
    where.add_argument(
        "--base-port",
        type=int,
        default=int(os.environ.get("SWITCHBOARD_BASE_PORT", DEFAULT_BASE)),
        help="the local stack whose Valkey to use (env SWITCHBOARD_BASE_PORT)",
    )
    text = "create, list and revoke API keys"
    keys = sub.add_parser("keys", help=text, description=text)
    actions = keys.add_subparsers(dest="action", required=True)
    create = actions.add_parser(
        "create", parents=[where], help="make a key for a client and print it, once"
    )
    create.add_argument("--client", required=True, help="the client id the key stands for")
    actions.add_parser(
        "list", parents=[where], help="every key's fingerprint and client (never the key)"
    )
    revoke = actions.add_parser("revoke", parents=[where], help="delete a key by fingerprint")
    revoke.add_argument("fingerprint", help="as `keys list` shows it")


def run(args: argparse.Namespace) -> int:
    url = args.valkey_url or f"valkey://127.0.0.1:{Ports.at(args.base_port).valkey}/0"
    return asyncio.run(_run(args, url))


async def _run(args: argparse.Namespace, url: str) -> int:
    client = Valkey.from_url(
        url, socket_timeout=TIMEOUT_SECONDS, socket_connect_timeout=TIMEOUT_SECONDS
    )
    store = KeyStore(client)
    try:
        if args.action == "create":
            return await _create(store, args.client)
        if args.action == "list":
            return await _list(store)
        return await _revoke(store, args.fingerprint)
    except (valkey_errors.ConnectionError, valkey_errors.TimeoutError):
        # Not the URL itself: it may carry a password.
        where = "--valkey-url" if args.valkey_url else f"the local stack on {args.base_port}"
        print(f"cannot reach Valkey ({where}); is it running?", file=sys.stderr)
        return 2
    except ValueError as e:
        print(e, file=sys.stderr)
        return 2
    finally:
        await client.aclose()


async def _create(store: KeyStore, client: str) -> int:
    key, record = await store.create(client)
    print(key)
    print(
        f"key {record.fingerprint} for client {record.client!r}: shown only now, keep it safe",
        file=sys.stderr,
    )
    return 0


async def _list(store: KeyStore) -> int:
    records = await store.list()
    if not records:
        print("no API keys in Valkey", file=sys.stderr)
        return 0
    width = max(len("client"), *(len(r.client) for r in records))
    print(f"{'fingerprint':<16}  {'client':<{width}}  created")
    for r in records:
        print(f"{r.fingerprint:<16}  {r.client:<{width}}  {r.created}")
    return 0


async def _revoke(store: KeyStore, fingerprint: str) -> int:
    if await store.revoke(fingerprint):
        print(f"revoked {fingerprint}; edges stop accepting it within their key cache TTL")
        return 0
    print(f"no key with fingerprint {fingerprint}", file=sys.stderr)
    return 1
