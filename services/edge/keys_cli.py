"""`switchboard keys create | list | revoke`: the API keys every edge replica accepts.

Keys live in Valkey (switchboard.edge.keys). `--valkey-url` (or SWITCHBOARD_EDGE_VALKEY_URL, as
the edge reads it) names it; without either, the default the caller passes to `add_parser`
(`switchboard.cli` passes the local stack's Valkey: the edge knows nothing of the launcher). A
new key is printed
once, alone on stdout so scripts can capture it; only its SHA-256 is stored. `list` and
`revoke` name keys by fingerprint, never by the key.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable

from valkey import exceptions as valkey_errors
from valkey.asyncio import Valkey

from .keys import KeyStore

TIMEOUT_SECONDS = 5.0
VALKEY_URL_ENV = "SWITCHBOARD_EDGE_VALKEY_URL"

# The Valkey to use when neither --valkey-url nor the environment names one, and how to name
# it in an error (never the URL itself: it may carry a password).
DefaultValkey = Callable[[argparse.Namespace], tuple[str, str]]


def add_parser(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    *,
    default_valkey: DefaultValkey | None = None,
    parents: list[argparse.ArgumentParser] | None = None,
) -> None:
    """`parents` add the options `default_valkey` reads (e.g. the local stack's base port)."""
    where = argparse.ArgumentParser(add_help=False, parents=parents or [])
    where.add_argument(
        "--valkey-url",
        default=os.environ.get(VALKEY_URL_ENV) or None,
        help=f"the Valkey holding the keys (env {VALKEY_URL_ENV}; default: local stack)",
    )
    where.set_defaults(default_valkey=default_valkey)
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
    if args.valkey_url:
        url, where = args.valkey_url, f"--valkey-url or {VALKEY_URL_ENV}"
    elif args.default_valkey is not None:
        url, where = args.default_valkey(args)
    else:
        print(f"no Valkey: pass --valkey-url or set {VALKEY_URL_ENV}", file=sys.stderr)
        return 2
    return asyncio.run(_run(args, url, where))


async def _run(args: argparse.Namespace, url: str, where: str) -> int:
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
        print(f"cannot reach Valkey ({where}); is it running?", file=sys.stderr)
        return 1  # a runtime failure; 2 is for usage errors
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
