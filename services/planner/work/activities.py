"""The worker's activities: `generate` streams one completion from the inference service into
the job's event log; `embed` embeds a batch of texts; `publish_event` appends the workflow's
state changes to the log. (`deliver_webhook` is in `delivery.py`.)

Both find the job from the workflow id (`enter_job`: a JobRef), so their inputs are only the
pipeline input and the event.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

import grpc
from temporalio import activity
from temporalio.exceptions import ApplicationError

from switchboard.api.inference.v1 import inference_pb2, inference_pb2_grpc
from switchboard.api.jobs.v1 import events_pb2, pipelines_pb2
from switchboard.api.planner.v1 import tasks_pb2
from switchboard.common import telemetry
from switchboard.common.callmetadata import call_metadata
from switchboard.common.errors import SwitchboardError, from_rpc_error
from switchboard.common.jobref import JobRef

from ..shared import errors
from ..shared.config import RetrySchedule
from ..shared.tasks import (
    EMBED,
    GENERATE,
    GENERATE_STAGE,
    PUBLISH_EVENT,
)
from ..stores.events import EventLog, job_event
from . import outage
from .outage import application_error
from .records import Generations

log = logging.getLogger(__name__)

CANCEL_DRAIN_SECONDS = 2.0

# grpc-stubs lacks the end-of-stream sentinel that `read()` returns.
EOF = grpc.aio.EOF  # type: ignore[attr-defined]

Call = grpc.aio.StreamStreamCall[inference_pb2.GenerateRequest, inference_pb2.GenerateResponse]


class Activities:
    def __init__(
        self,
        inference: inference_pb2_grpc.InferenceServiceAsyncStub,
        events: EventLog,
        *,
        schedule: RetrySchedule | None = None,
        generations: Generations | None = None,
    ) -> None:
        self._inference = inference
        self._events = events
        self._schedule = schedule or RetrySchedule()
        self._generations = generations or Generations(events.client)

    @activity.defn(name=PUBLISH_EVENT)
    async def publish_event(self, event: events_pb2.JobEvent) -> str:
        ref = enter_job()
        try:
            if event.HasField("state_changed"):
                return await self._events.append_state(ref, event)
            # Any other event once per publish, also when it runs again after it landed (a
            # lost reply, or a local activity whose workflow task did not complete).
            return await self._events.append_once(ref, _publish_token(), event)
        except SwitchboardError as e:
            failure = outage.failed(application_error(e), self._schedule)
            if event.HasField("state_changed") and failure.non_retryable:
                # A job must not end without its state changes: those are retried for good.
                failure = _retry_anyway(failure, self._schedule)
            raise failure from e

    @activity.defn(name=GENERATE)
    async def generate(self, request: pipelines_pb2.GenerateInput) -> pipelines_pb2.GenerateOutput:
        """The `generate` pipeline's one generation (a stage-less GenerationTask)."""
        start = inference_pb2.GenerateStart(
            model=request.model, prompt=request.prompt, params=request.params
        )
        return await self.generate_stage(tasks_pb2.GenerationTask(start=start))

    @activity.defn(name=GENERATE_STAGE)
    async def generate_stage(self, task: tasks_pb2.GenerationTask) -> pipelines_pb2.GenerateOutput:
        """Streams one generation into the job's event log (token events tagged with the
        stage); heartbeats throughout, and stops the generation when cancelled."""
        ref = enter_job()
        attempt = activity.info().attempt
        try:
            outage.check_horizon(self._schedule)
            # A finished attempt whose completion was lost: its result, nothing generated.
            if (found := await self._generations.find(ref, task.stage)) is not None:
                log.info("generation found recorded", extra={"fields": {"attempt": attempt}})
                return found
            output = await self._generate(ref, task, attempt)
            await self._generations.record(ref, task.stage, output)
            return output
        except grpc.aio.AioRpcError as e:
            error = outage.failed(application_error(from_rpc_error(e)), self._schedule)
            await self._log_failure(ref, task.stage, attempt, error)
            raise error from e
        except ApplicationError as e:  # the model's own error, or the stream ended early
            error = outage.failed(e, self._schedule)
            await self._log_failure(ref, task.stage, attempt, error)
            if error is e:  # final already
                raise
            raise error from e
        except SwitchboardError as e:  # the event log's errors (EVENT_LOG_UNAVAILABLE)
            error = outage.failed(application_error(e), self._schedule)
            await self._log_failure(ref, task.stage, attempt, error)
            raise error from e

    async def _generate(
        self, ref: JobRef, task: tasks_pb2.GenerationTask, attempt: int
    ) -> pipelines_pb2.GenerateOutput:
        if attempt > 1:
            await self._events.append(ref, _retrying(ref, task.stage, attempt))
        fields = {"model": task.start.model, "attempt": attempt, "stage": task.stage}
        log.info("generation started", extra={"fields": fields})
        request_id = ref.request_id(task.stage)
        affinity = task.affinity_key or ref.id
        call: Call = self._inference.Generate(
            None,
            metadata=call_metadata("", job_id=ref.id, session_id=affinity),
        )
        request = inference_pb2.GenerateRequest(request_id=request_id, start=task.start)
        return await self._stream(call, request, ref, task.stage)

    async def _log_failure(
        self, ref: JobRef, stage: str, attempt: int, error: ApplicationError
    ) -> None:
        """Tells the job's followers why an attempt failed (Temporal keeps it only in its
        history). While the log is down the event is kept and appended once it is back."""
        line = events_pb2.Log(
            level=events_pb2.Log.ERROR if error.non_retryable else events_pb2.Log.WARNING,
            message=f"generation attempt {attempt} failed ({error.type}): {error.message}",
            stage=stage,
        )
        if not await self._events.append_log(ref, job_event(ref, log=line)):
            log.warning("failed attempt logged later", extra={"fields": {"stage": stage}})

    @activity.defn(name=EMBED)
    async def embed(self, request: pipelines_pb2.EmbedInput) -> pipelines_pb2.EmbedOutput:
        ref = enter_job()
        log.info("embedding started", extra={"fields": {"texts": len(request.texts)}})
        try:
            reply = await self._inference.Embed(
                inference_pb2.EmbedRequest(model=request.model, texts=request.texts),
                metadata=call_metadata("", job_id=ref.id),
            )
        except grpc.aio.AioRpcError as e:
            raise application_error(from_rpc_error(e)) from e
        return pipelines_pb2.EmbedOutput(embeddings=reply.embeddings, model=reply.model)

    async def _stream(
        self, call: Call, start: inference_pb2.GenerateRequest, ref: JobRef, stage: str
    ) -> pipelines_pb2.GenerateOutput:
        # Reading happens in its own task: cancelling a task blocked in `call.read()` would
        # cancel the whole call, and the cancel message must still reach the server.
        collect = asyncio.create_task(self._collect(call, ref, start.request_id, stage))
        try:
            await call.write(start)
            return await asyncio.shield(collect)
        except asyncio.CancelledError:
            await _cancel(call, start.request_id, collect)
            raise
        finally:
            call.cancel()
            await asyncio.gather(collect, return_exceptions=True)

    async def _collect(
        self, call: Call, ref: JobRef, request_id: str, stage: str
    ) -> pipelines_pb2.GenerateOutput:
        """Logs each delta as a token event until the generation is done."""
        texts: list[str] = []
        while (response := await call.read()) is not EOF:
            if not isinstance(response, inference_pb2.GenerateResponse):
                continue
            if response.request_id != request_id:
                continue
            kind = response.WhichOneof("event")
            if kind == "delta":
                texts.append(response.delta.text)
                await self._events.append(ref, _token(ref, stage, response.delta))
                activity.heartbeat(len(texts))
            elif kind == "done":
                done = response.done
                reason = inference_pb2.FinishReason.Name(done.finish_reason)
                fields = {"tokens": len(texts), "finish_reason": reason}
                log.info("generation finished", extra={"fields": fields})
                return pipelines_pb2.GenerateOutput(
                    text="".join(texts), finish_reason=done.finish_reason, usage=done.usage
                )
            elif kind == "error":
                raise application_error(SwitchboardError.from_status(response.error))
        raise ApplicationError(
            "the inference stream ended before the generation finished",
            grpc.StatusCode.UNAVAILABLE.name,
            type=errors.INFERENCE_STREAM_ENDED,
        )


def _token(ref: JobRef, stage: str, delta: inference_pb2.TokenDelta) -> events_pb2.JobEvent:
    token = events_pb2.TokenDelta(text=delta.text, index=delta.index, stage=stage)
    return job_event(ref, token=token)


def enter_job() -> JobRef:
    """The running activity's job, from its workflow id (where a job enters the worker); also
    tags this task's logs with the job."""
    workflow_id = activity.info().workflow_id
    if workflow_id is None:
        raise ApplicationError("runs only inside a job workflow", type=errors.NOT_IN_WORKFLOW)
    ref = JobRef.from_workflow_id(workflow_id)
    telemetry.client_id_var.set(ref.client)
    telemetry.job_id_var.set(ref.id)
    return ref


def _publish_token() -> str:
    """The same for every attempt and re-run of one publish, and only for it: the workflow
    run, whether it is a local activity (numbered apart from the others), and its id."""
    info = activity.info()
    kind = "local" if info.is_local else "task"
    return f"publish:{info.workflow_run_id}:{kind}:{info.activity_id}"


def _retry_anyway(error: ApplicationError, schedule: RetrySchedule) -> ApplicationError:
    """The same failure, retried after the schedule's longest wait."""
    return ApplicationError(
        error.message,
        *error.details,
        type=error.type,
        next_retry_delay=timedelta(seconds=schedule.max_interval_seconds),
    )


def _retrying(ref: JobRef, stage: str, attempt: int) -> events_pb2.JobEvent:
    # Tokens restart at index 0 after this event; earlier ones belong to a failed attempt.
    progress = events_pb2.Progress(
        stage=stage or "generate",
        message=f"retrying (attempt {attempt}); tokens restart at index 0",
    )
    return job_event(ref, progress=progress)


async def _cancel(call: Call, request_id: str, collect: asyncio.Task[object]) -> None:
    """Tells the inference service to stop this generation; waits briefly until it has."""
    cancel = inference_pb2.GenerateRequest(
        request_id=request_id, cancel=inference_pb2.GenerateCancel()
    )
    try:
        await call.write(cancel)
        await call.done_writing()
        await asyncio.wait_for(asyncio.shield(collect), CANCEL_DRAIN_SECONDS)
    except (grpc.aio.AioRpcError, asyncio.InvalidStateError, TimeoutError) as e:
        log.info("generation cancel not confirmed", extra={"fields": {"error": repr(e)}})
    except ApplicationError:
        pass  # the generation ended on its own terms; the job is cancelled all the same
    log.info("generation cancelled", extra={"fields": {"request_id": request_id}})
