"""The `chat` pipeline inside JobWorkflow: one user turn of a session.

`load_session` (the session's window, its last k messages) → one streamed generation over
[system] + window + [the user message], its tokens in the job's log (stage `generate`),
with the session as affinity key so a conversation keeps to one inference replica and its
prompt cache → `append_turn` (the user message and the answer, to the window and to the
durable transcript) → `result.chat`.

A cancel before the answer exists ends the job CANCELLED with nothing appended. Once the
answer exists, the append runs to its end whatever arrives meanwhile and the job succeeds
(the cancel came too late): a session's transcript holds exactly its SUCCEEDED chat jobs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from google.protobuf import timestamp_pb2

    from switchboard.api.inference.v1 import inference_pb2
    from switchboard.api.jobs.v1 import jobs_pb2, pipelines_pb2
    from switchboard.api.planner.v1 import tasks_pb2

    from ..shared.tasks import APPEND_TURN, LOAD_SESSION

if TYPE_CHECKING:
    from .context import JobContext

# The stage its generation's tokens are tagged with.
GENERATE_STAGE = "generate"

SESSION_START_TO_CLOSE = timedelta(seconds=10)
# Unlimited here: the worker's activity decides (an outage of the chat store is waited out
# up to the worker's horizon, anything else gets a few attempts; see `outage.py`).
LOAD_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=500),
    maximum_interval=timedelta(seconds=5),
    maximum_attempts=0,
)
# After it the answer exists: keep trying (append_turn is idempotent) rather than lose it.
APPEND_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=500),
    maximum_interval=timedelta(seconds=10),
    maximum_attempts=0,
)


async def run_chat(wf: JobContext, chat: pipelines_pb2.ChatInput) -> None:
    """Sets `result.chat`; appends the turn to the session only when the answer is complete."""
    window: jobs_pb2.ChatSession = await workflow.execute_activity(
        LOAD_SESSION,
        chat.session_id,
        result_type=jobs_pb2.ChatSession,
        start_to_close_timeout=SESSION_START_TO_CLOSE,
        retry_policy=LOAD_RETRY,
    )
    answer = await wf.stream_generation(_generation(wf, chat, window.turns))
    turns = [
        jobs_pb2.ChatTurn(
            role="user", content=chat.message, create_time=wf.job.create_time, job=wf.job.name
        ),
        jobs_pb2.ChatTurn(
            role="assistant", content=answer.text, create_time=_now(), job=wf.job.name
        ),
    ]
    append = workflow.execute_activity(
        APPEND_TURN,
        jobs_pb2.ChatSession(name=f"sessions/{chat.session_id}", turns=turns),
        start_to_close_timeout=SESSION_START_TO_CLOSE,
        retry_policy=APPEND_RETRY,
    )
    await _to_the_end(append)
    wf.job.result.chat.CopyFrom(
        pipelines_pb2.ChatOutput(
            text=answer.text,
            finish_reason=answer.finish_reason,
            usage=answer.usage,
            context_messages=len(window.turns),
        )
    )


def _generation(
    wf: JobContext, chat: pipelines_pb2.ChatInput, window: Iterable[jobs_pb2.ChatTurn]
) -> tasks_pb2.GenerationTask:
    """The generation: [system] + the window + the user message."""
    Message = inference_pb2.ChatMessage
    messages = [Message(role="system", content=chat.system)] if chat.system else []
    messages += [Message(role=turn.role, content=turn.content) for turn in window]
    messages.append(Message(role="user", content=chat.message))
    start = inference_pb2.GenerateStart(model=chat.model, messages=messages, params=chat.params)
    # Scoped by client: two clients' sessions of the same name are different conversations.
    return tasks_pb2.GenerationTask(
        stage=GENERATE_STAGE, start=start, affinity_key=f"{wf.ref.client}/{chat.session_id}"
    )


async def _to_the_end(awaitable: Awaitable[Any]) -> None:
    """Awaits to its end, whatever cancels of the job arrive meanwhile (they come too late)."""
    future = asyncio.ensure_future(awaitable)
    while not future.done():
        try:
            await asyncio.shield(future)
        except asyncio.CancelledError:
            workflow.logger.info("cancel ignored: the chat turn is being stored")
    future.result()


def _now() -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(workflow.now())
    return stamp
