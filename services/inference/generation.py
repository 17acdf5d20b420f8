"""One generation: its route, its Triton stream, its deadlines, its metrics, its events.

A generation emits `delta`s and then exactly one terminal event, `done` or `error`. A cancel
asked for by the client ends it with `done` FINISH_REASON_CANCELLED; a cancel for any other
reason (the client dropped the whole stream, shutdown) ends it silently, since nobody is
left to tell.

The route's candidates are tried in turn until one streams, but only while no token has
been sent: a client that has seen text from one model must not get the rest from another.
Three deadlines bound it, all measured from the start (queueing included): the first
token, the gap between tokens, and the whole generation. A deadline cancels that
generation's Triton stream, which stops the backend.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from contextlib import aclosing
from dataclasses import dataclass

import prometheus_client

from switchboard.api.inference.v1 import inference_pb2 as pb
from switchboard.common.errors import SwitchboardError, internal_status

from .errors import (
    BackendError,
    FirstTokenTimeout,
    GenerationTimeout,
    InterTokenTimeout,
)
from .models import CHAT, Route
from .routing import Backend, Router, admitted
from .triton import Finish, GenerateCall, TritonClient

log = logging.getLogger(__name__)

GENERATIONS_STARTED = prometheus_client.Counter(
    "switchboard_inference_generations_started_total",
    "Generations started, by the name asked for (a model or an alias).",
    ["model"],
)
GENERATIONS_FINISHED = prometheus_client.Counter(
    "switchboard_inference_generations_finished_total",
    "Generations ended, by the model that served (or was tried last) and finish reason:"
    " stop, length, cancelled, error, or dropped (the client's stream went away).",
    ["model", "finish_reason"],
)
GENERATION_ERRORS = prometheus_client.Counter(
    "switchboard_inference_generation_errors_total",
    "Generations that ended with an error, by error reason.",
    ["model", "reason"],
)
TIME_TO_FIRST_TOKEN = prometheus_client.Histogram(
    "switchboard_inference_time_to_first_token_seconds",
    "From a generation's start to its first token.",
    ["model"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
TOKENS_STREAMED = prometheus_client.Counter(
    "switchboard_inference_tokens_streamed_total", "Tokens streamed to clients.", ["model"]
)
ACTIVE_GENERATIONS = prometheus_client.Gauge(
    "switchboard_inference_active_generations", "Generations running now."
)

FINISH_REASONS = {
    "stop": pb.FINISH_REASON_STOP,
    "length": pb.FINISH_REASON_LENGTH,
    "cancelled": pb.FINISH_REASON_CANCELLED,
}
# The contract's seed is uint64; the chat model takes [0, 2**32 - 2]: llama.cpp reads
# 2**32 - 1 as "pick a random seed", so seeds are folded into 2**32 - 1 values.
SEED_RANGE = 2**32 - 1

Emit = Callable[[pb.GenerateResponse], None]


@dataclass(frozen=True)
class Limits:
    first_token_s: float
    total_s: float
    inter_token_s: float


class Generation:
    """Runs as its own task; `cancel()` is the client's cancel for this request_id."""

    def __init__(
        self,
        request_id: str,
        route: Route,
        start: pb.GenerateStart,
        *,
        router: Router,
        triton: TritonClient,
        limits: Limits,
        emit: Emit,
        log_fields: dict[str, str] | None = None,
    ) -> None:
        self.request_id = request_id
        self.route = route
        self.model = route.candidates[0]  # the one serving (or tried last) once it runs
        self._start = start
        self._router = router
        self._triton = triton
        self._limits = limits
        self._emit = emit
        self._extra = log_fields or {}
        self._tokens = 0
        self._started = self._last_token = 0.0
        self._cancel_requested = False
        self._error_reason = ""
        self._task: asyncio.Task[None] | None = None

    def cancel(self) -> None:
        self._cancel_requested = True
        # Only a running task is cancelled; one not yet started sees the flag when it starts.
        if self._task is not None and not self._task.done():
            self._task.cancel()

    async def run(self) -> None:
        self._task = asyncio.current_task()
        GENERATIONS_STARTED.labels(self.route.name).inc()
        ACTIVE_GENERATIONS.inc()
        outcome = "dropped"
        try:
            response, outcome = await self._outcome()
            # Synchronous from here: no cancel can land between the outcome and its event.
            self._emit(response)
        finally:
            ACTIVE_GENERATIONS.dec()
            GENERATIONS_FINISHED.labels(self.model.name, outcome).inc()
            log.info("generation ended", extra={"fields": self._log_fields(outcome)})

    async def _outcome(self) -> tuple[pb.GenerateResponse, str]:
        rid = self.request_id
        if self._cancel_requested:
            done = self._done("cancelled", 0, 0)
            return pb.GenerateResponse(request_id=rid, done=done), "cancelled"
        try:
            done = await self._serve()
        except asyncio.CancelledError:
            task = asyncio.current_task()
            # Only the client's cancel is answered; any other cancel (also) pending wins.
            if not self._cancel_requested or task is None or task.uncancel() > 0:
                raise
            # The stream was cut, so the model's counts never came: report what was sent.
            done = self._done("cancelled", 0, self._tokens)
            return pb.GenerateResponse(request_id=rid, done=done), "cancelled"
        except SwitchboardError as exc:
            GENERATION_ERRORS.labels(self.model.name, exc.reason).inc()
            self._error_reason = exc.reason
            return pb.GenerateResponse(request_id=rid, error=exc.to_status()), "error"
        except Exception:  # a bug must still end this request_id with an event
            log.exception("generation failed", extra={"fields": self._log_fields("error")})
            GENERATION_ERRORS.labels(self.model.name, "INTERNAL").inc()
            return pb.GenerateResponse(request_id=rid, error=internal_status()), "error"
        return pb.GenerateResponse(request_id=rid, done=done), _reason_name(done)

    async def _serve(self) -> pb.GenerateDone:
        self._started = asyncio.get_running_loop().time()
        return await self._router.first_success(
            self.route, self._attempt, may_fall_back=lambda _: self._tokens == 0
        )

    async def _attempt(self, backend: Backend) -> pb.GenerateDone:
        self.model = backend.model
        try:
            async with admitted(backend, wait_until=self._deadline()) as permit:
                return await self._stream(permit.success)
        except TimeoutError:  # only the wait for a slot: the stream converts its own
            raise FirstTokenTimeout(
                f"no token within {self._limits.first_token_s:g} s (waited for a slot)",
                metadata={**self._meta(), "queued": "true"},
            ) from None

    async def _stream(self, proven: Callable[[], None]) -> pb.GenerateDone:
        """One Triton stream; `proven` is called at the first token (the backend works)."""
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout_at(self._deadline()) as timer:
                async with aclosing(self._triton.generate(self._call())) as events:
                    async for event in events:
                        if isinstance(event, Finish):
                            return self._finished(event)
                        if self._tokens == 0:
                            proven()
                            TIME_TO_FIRST_TOKEN.labels(self.model.name).observe(
                                loop.time() - self._started
                            )
                        self._emit(self._delta(event.text))
                        self._last_token = loop.time()
                        timer.reschedule(self._deadline())
        except TimeoutError:
            raise self._timeout_error() from None
        raise BackendError("Triton stream ended without a finish", metadata=self._meta())

    def _deadline(self) -> float:
        total = self._started + self._limits.total_s
        if self._tokens == 0:
            return min(self._started + self._limits.first_token_s, total)
        return min(self._last_token + self._limits.inter_token_s, total)

    def _timeout_error(self) -> SwitchboardError:
        limits, meta = self._limits, self._meta()
        if self._tokens == 0:
            return FirstTokenTimeout(f"no token within {limits.first_token_s:g} s", metadata=meta)
        if self._started + limits.total_s <= self._last_token + limits.inter_token_s:
            return GenerationTimeout(f"generation exceeded {limits.total_s:g} s", metadata=meta)
        return InterTokenTimeout(
            f"no token for {limits.inter_token_s:g} s after token {self._tokens}", metadata=meta
        )

    def _call(self) -> GenerateCall:
        model, start = self.model, self._start
        params = start.params
        sampling = model.takes_sampling
        return GenerateCall(
            model=model.triton_name,
            prompt=self._prompt(),
            request_id=self.request_id,
            # proto3 has no presence for scalars: max_tokens 0 means "the model's default".
            max_tokens=(params.max_tokens or None) if model.takes_max_tokens else None,
            tokens_per_second=model.tokens_per_second,
            messages=self._messages() if model.style == CHAT else None,
            temperature=params.temperature if sampling else None,
            top_p=(params.top_p or None) if sampling else None,
            stop=tuple(params.stop) if sampling else (),
            seed=(params.seed % SEED_RANGE or None) if sampling else None,
        )

    def _prompt(self) -> str:
        # A raw model has no chat template: a conversation reaches it as its turns' text.
        if self._start.prompt:
            return self._start.prompt
        return "\n".join(m.content for m in self._start.messages)

    def _messages(self) -> str:
        if self._start.prompt:
            turns = [{"role": "user", "content": self._start.prompt}]
        else:
            turns = [{"role": m.role, "content": m.content} for m in self._start.messages]
        return json.dumps(turns)

    def _delta(self, text: str) -> pb.GenerateResponse:
        delta = pb.TokenDelta(text=text, index=self._tokens)
        self._tokens += 1
        TOKENS_STREAMED.labels(self.model.name).inc()
        return pb.GenerateResponse(request_id=self.request_id, delta=delta)

    def _finished(self, finish: Finish) -> pb.GenerateDone:
        # The model's own count wins: one delta may hold several tokens of a real model.
        completion = finish.completion_tokens or self._tokens
        return self._done(finish.reason, finish.prompt_tokens, completion)

    def _done(self, reason: str, prompt_tokens: int, completion_tokens: int) -> pb.GenerateDone:
        usage = pb.Usage(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)
        return pb.GenerateDone(
            finish_reason=FINISH_REASONS.get(reason, pb.FINISH_REASON_UNSPECIFIED),
            usage=usage,
            model=self.model.name,
        )

    def _meta(self) -> dict[str, str]:
        return {"model": self.model.name, "request_id": self.request_id}

    def _log_fields(self, outcome: str) -> dict[str, object]:
        fields: dict[str, object] = {
            **self._meta(),
            **self._extra,
            "route": self.route.name,
            "outcome": outcome,
            "tokens": self._tokens,
        }
        if self._error_reason:
            fields["reason"] = self._error_reason
        return fields


def _reason_name(done: pb.GenerateDone) -> str:
    name = pb.FinishReason.Name(done.finish_reason)
    return name.removeprefix("FINISH_REASON_").lower()
