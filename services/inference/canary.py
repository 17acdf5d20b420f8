"""The readiness canary: real, tiny inferences on the default routes, at start and after.

Triton reports a model ready as soon as it is loaded, even when its Python backend stub has
died; only an inference that answers proves the path works end to end. The canary runs a
2-token generation or a one-text embedding on each canary route, trying the route's
candidates in order as requests would; a route passes when one candidate does. Routes none
of whose models is in Triton's repository are skipped (this deployment does not serve
them), but at least one route must pass.

The canary calls Triton directly, not through breakers or admission: it asks whether the
backend works now, and must not count against real traffic. Once serving, a route that real
traffic has just served well is not probed again: a model that runs one request at a time
would keep the probe waiting behind that traffic, and a busy, working replica would then
report itself unhealthy.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from contextlib import aclosing

import numpy as np

from switchboard.common.errors import SwitchboardError

from .models import CHAT, EMBED, GENERATE, Model, Route
from .triton import Finish, GenerateCall, TritonClient

log = logging.getLogger(__name__)

PROMPT = "switchboard canary"
TOKENS = 2


class CanaryFailed(Exception):
    pass


async def probe(triton: TritonClient, model: Model, timeout_s: float) -> None:
    """One canary inference on one model; raises CanaryFailed unless it answers well."""
    try:
        async with asyncio.timeout(timeout_s):
            if model.task == GENERATE:
                await _generate(triton, model)
            elif model.task == EMBED:
                await _embed(triton, model, timeout_s)
            else:
                raise CanaryFailed(f"no canary for task {model.task!r}")
    except (SwitchboardError, TimeoutError) as exc:
        raise CanaryFailed(f"canary on {model.name} failed: {exc!r}") from exc


async def _generate(triton: TritonClient, model: Model) -> None:
    call = GenerateCall(
        model=model.triton_name,
        prompt=PROMPT,
        request_id="canary",
        max_tokens=TOKENS if model.takes_max_tokens else None,
        tokens_per_second=model.tokens_per_second,
        messages=json.dumps([{"role": "user", "content": PROMPT}]) if model.style == CHAT else None,
    )
    tokens, finish = 0, None
    async with aclosing(triton.generate(call)) as events:
        async for event in events:
            if isinstance(event, Finish):
                finish = event
            else:
                tokens += 1
    # A real model may stop early or pack tokens into one delta; some text must come.
    if not 1 <= tokens <= TOKENS or finish is None or finish.reason not in ("length", "stop"):
        raise CanaryFailed(f"canary on {model.name} got {tokens} tokens and {finish}")


async def _embed(triton: TritonClient, model: Model, timeout_s: float) -> None:
    vectors = await triton.embed(
        model.triton_name, [PROMPT], batched=model.batched, timeout_s=timeout_s
    )
    if vectors.shape[0] != 1 or vectors.shape[1] == 0 or not np.isfinite(vectors).all():
        raise CanaryFailed(f"canary on {model.name} got an unusable embedding {vectors.shape}")


# Whether real traffic has just shown a model working (then it needs no probe).
Fresh = Callable[[Model], bool]


async def probe_routes(
    triton: TritonClient, routes: Sequence[Route], timeout_s: float, fresh: Fresh | None = None
) -> dict[str, str]:
    """Each deployed route's serving model, by route; raises CanaryFailed on any failure."""
    try:
        deployed = await triton.repository()
    except SwitchboardError as exc:
        raise CanaryFailed(f"cannot list Triton's models: {exc!r}") from exc
    served: dict[str, str] = {}
    for route in routes:
        candidates = [m for m in route.candidates if m.triton_name in deployed]
        if proven := next((m for m in candidates if fresh is not None and fresh(m)), None):
            served[route.name] = proven.name
        elif candidates:
            served[route.name] = await _first_passing(triton, route.name, candidates, timeout_s)
    if not served:
        raise CanaryFailed(f"none of the canary routes is deployed: {[r.name for r in routes]}")
    return served


async def _first_passing(
    triton: TritonClient, route: str, candidates: list[Model], timeout_s: float
) -> str:
    failures = []
    for model in candidates:
        try:
            await probe(triton, model, timeout_s)
            return model.name
        except CanaryFailed as exc:
            failures.append(str(exc))
    raise CanaryFailed(f"route {route!r}: " + "; ".join(failures))


async def wait_until_healthy(
    triton: TritonClient,
    routes: Sequence[Route],
    *,
    timeout_s: float = 10.0,
    first_backoff_s: float = 0.25,
    max_backoff_s: float = 5.0,
) -> tuple[int, dict[str, str]]:
    """Retries with exponential backoff until the canary passes: (attempts, served)."""
    backoff, attempt = first_backoff_s, 0
    while True:
        attempt += 1
        try:
            return attempt, await probe_routes(triton, routes, timeout_s)
        except CanaryFailed as exc:
            log.warning(
                "canary failed; retrying",
                extra={"fields": {"attempt": attempt, "error": str(exc), "retry_s": backoff}},
            )
        await asyncio.sleep(backoff)
        backoff = min(backoff * 2, max_backoff_s)


async def watch(
    triton: TritonClient,
    routes: Sequence[Route],
    on_change: Callable[[bool], Awaitable[None]],
    *,
    interval_s: float,
    timeout_s: float,
    fresh: Fresh | None = None,
    on_pass: Callable[[dict[str, str]], None] | None = None,
) -> None:
    """After the first pass: the canary every `interval_s`, reporting each change of health,
    and each pass's serving model by route to `on_pass`."""
    healthy = True
    while True:
        await asyncio.sleep(interval_s)
        try:
            served = await probe_routes(triton, routes, timeout_s, fresh)
            passed = True
        except CanaryFailed as exc:
            passed = False
            log.warning("periodic canary failed", extra={"fields": {"error": str(exc)}})
        if passed and on_pass is not None:
            on_pass(served)
        if passed != healthy:
            healthy = passed
            log.warning("health changed", extra={"fields": {"serving": healthy}})
            await on_change(healthy)
