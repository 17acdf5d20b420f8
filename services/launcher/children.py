"""One child of the supervisor at the operating-system level: started in a session (process
group) of its own that dies with the supervisor, stopped as a whole group, probed, awaited."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
from typing import IO

from .spec import ProcessSpec

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def kill_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def start(spec: ProcessSpec, log: IO[bytes]) -> asyncio.Future[asyncio.subprocess.Process]:
    """Starts the spec's argv with its environment, output to `log`, in a new session; the
    kernel sends it SIGTERM should the supervisor die (PR_SET_PDEATHSIG)."""
    return asyncio.ensure_future(
        asyncio.create_subprocess_exec(
            *spec.argv(),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log,
            stderr=asyncio.subprocess.STDOUT,
            env=dict(spec.env),
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
    )


async def passes(spec: ProcessSpec) -> bool:
    # A check that raises must not end the process's supervision: it is just not ready.
    try:
        return await spec.check()
    except Exception:  # noqa: BLE001
        return False


async def exit_or_request(child: asyncio.subprocess.Process, request: asyncio.Event) -> bool:
    """Waits until the child exits (False) or a restart is asked for (True)."""
    exited = asyncio.create_task(child.wait())
    asked = asyncio.create_task(request.wait())
    try:
        done, _ = await asyncio.wait({exited, asked}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        exited.cancel()
        asked.cancel()
    return asked in done
