"""The start-up canary: a real 2-token generation before the service says SERVING.

Triton reports a model ready as soon as it is loaded, even when its Python backend stub has
died; only a generation that streams tokens proves the path works end to end.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import aclosing

from switchboard.common.errors import SwitchboardError

from .models import Model
from .triton import Finish, GenerateCall, TritonClient

log = logging.getLogger(__name__)

PROMPT = "switchboard canary"
TOKENS = 2


class CanaryFailed(Exception):
    pass


async def probe(triton: TritonClient, model: Model, timeout_s: float) -> None:
    """One canary generation; raises CanaryFailed unless it streams exactly 2 tokens."""
    call = GenerateCall(
        model=model.triton_name,
        prompt=PROMPT,
        request_id="canary",
        max_tokens=TOKENS if model.takes_max_tokens else None,
        tokens_per_second=model.tokens_per_second,
    )
    tokens, finish = 0, None
    try:
        async with asyncio.timeout(timeout_s), aclosing(triton.generate(call)) as events:
            async for event in events:
                if isinstance(event, Finish):
                    finish = event
                else:
                    tokens += 1
    except (SwitchboardError, TimeoutError) as exc:
        raise CanaryFailed(f"canary generation failed: {exc!r}") from exc
    if tokens != TOKENS or finish is None or finish.reason != "length":
        raise CanaryFailed(f"canary got {tokens} tokens and {finish}, wanted {TOKENS}, length")


async def wait_until_healthy(
    triton: TritonClient,
    model: Model,
    *,
    timeout_s: float = 10.0,
    first_backoff_s: float = 0.25,
    max_backoff_s: float = 5.0,
) -> int:
    """Retries the canary with exponential backoff until it passes; returns the attempts."""
    backoff, attempt = first_backoff_s, 0
    while True:
        attempt += 1
        try:
            await probe(triton, model, timeout_s)
            return attempt
        except CanaryFailed as exc:
            log.warning(
                "canary failed; retrying",
                extra={"fields": {"attempt": attempt, "error": str(exc), "retry_s": backoff}},
            )
        await asyncio.sleep(backoff)
        backoff = min(backoff * 2, max_backoff_s)
