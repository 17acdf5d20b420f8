"""The stage runner: an inline stage graph or a fan-out, run inside JobWorkflow.

A stage starts as soon as every stage it runs after has SUCCEEDED, so independent stages run
in parallel. Each stage logs Progress RUNNING and then one final status (SUCCEEDED, FAILED,
TIMED_OUT, CANCELLED or SKIPPED); after each stage ends the job logs a Progress of its own
(`stage` empty, "k of n stages done"). A stage's budget is a workflow timer: when it fires
the stage's generation is stopped at the backend (and confirmed stopped) before the stage is
TIMED_OUT, so no token of it follows its final event.

Without `allow_partial` the first stage that does not succeed fails the job (reason
STAGE_FAILED, ErrorInfo metadata `stage`, `stage_status`, `stage_reason`) and the stages still
running are stopped. With it, the stages after a failed one are SKIPPED and the job succeeds.
A fan-out is a graph of independent branches that succeeds when at least `min_succeeded`
branches do, else fails with TOO_FEW_SUCCEEDED. Either way the job's `result` holds every
stage's StageResult, also when the job FAILED.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING

from temporalio import workflow
from temporalio.exceptions import ActivityError, CancelledError, TimeoutError

with workflow.unsafe.imports_passed_through():
    from switchboard.api.inference.v1 import inference_pb2
    from switchboard.api.jobs.v1 import pipelines_pb2
    from switchboard.api.planner.v1 import tasks_pb2

    from ..shared import errors, graphs

if TYPE_CHECKING:
    from .context import JobContext

Stage = pipelines_pb2.Stage
StageResult = pipelines_pb2.StageResult
Status = StageResult.Status
Output = pipelines_pb2.GenerateOutput | pipelines_pb2.EmbedOutput
# Time for a generation to confirm its stop (a heartbeat, then the backend's drain).
STOP_GRACE = timedelta(seconds=10)
FINAL = frozenset(
    {Status.SUCCEEDED, Status.FAILED, Status.CANCELLED, Status.SKIPPED, Status.TIMED_OUT}
)


class _TimedOut(Exception):
    """The stage's budget ran out; its work has been stopped."""


async def run_graph(wf: JobContext, graph: pipelines_pb2.StageGraph) -> None:
    """The `graph` pipeline: sets `result.graph`; fails on the first failed stage unless the
    graph allows partial results."""
    _checked(wf, graph)
    runner = StageRunner(wf, graph.stages, fail_fast=not graph.allow_partial)
    output = await runner.run()
    wf.job.result.graph.CopyFrom(output)
    if runner.failed is not None and not graph.allow_partial:
        wf.fail(graphs.stage_failed(runner.failed))


async def run_fan_out(wf: JobContext, fan_out: pipelines_pb2.FanOutInput) -> None:
    """The `fan-out` pipeline: sets `result.fan_out`; fails when fewer than `min_succeeded`
    branches (1 when unset) succeeded."""
    try:
        graphs.check_fan_out(fan_out)
    except errors.InvalidStageGraph as e:
        wf.fail(e.to_status())
    graph = graphs.fan_out_graph(fan_out)
    output = await StageRunner(wf, graph.stages, fail_fast=False).run()
    wf.job.result.fan_out.CopyFrom(output)
    needed = fan_out.min_succeeded or 1
    if output.succeeded < needed:
        wf.fail(graphs.too_few_succeeded(output, needed))


def _checked(wf: JobContext, graph: pipelines_pb2.StageGraph) -> None:
    """CreateJob refused bad graphs; a workflow started another way is checked here too."""
    try:
        graphs.check_graph(graph)
    except errors.InvalidStageGraph as e:
        wf.fail(e.to_status())


class StageRunner:
    """Runs stages in dependency order, in parallel where they are independent."""

    def __init__(self, wf: JobContext, stages: Sequence[Stage], *, fail_fast: bool) -> None:
        self._wf = wf
        self._stages = list(stages)
        self._fail_fast = fail_fast
        self._results = {s.id: StageResult(id=s.id, status=Status.PENDING) for s in stages}
        self._running: dict[str, asyncio.Task[StageResult]] = {}
        self.failed: StageResult | None = None

    async def run(self) -> pipelines_pb2.StagesOutput:
        """Every stage's result, in request order. A cancel of the job stops every running
        stage (each confirms it stopped) before it propagates."""
        try:
            await self._drive()
        except asyncio.CancelledError:
            await self._wf.cancelling()
            await self._stop()
            await self._close(Status.CANCELLED, "cancelled with the job")
            raise
        return self._output()

    async def _drive(self) -> None:
        await self._start_ready()
        while self._running:
            await workflow.wait(list(self._running.values()), return_when=asyncio.FIRST_COMPLETED)
            for stage in self._stages:  # request order: deterministic whatever ended together
                task = self._running.get(stage.id)
                if task is None or not task.done():
                    continue
                del self._running[stage.id]
                await self._ended(task.result())
                if self.failed is not None and self._fail_fast:
                    await self._stop()
                    await self._close(Status.SKIPPED, "not run: the job failed")
                    return
            await self._start_ready()

    async def _start_ready(self) -> None:
        """Starts every pending stage whose dependencies succeeded; skips those with a
        dependency that did not (and, in turn, the stages after them)."""
        changed = True
        while changed:
            changed = False
            for stage in self._stages:
                if self._results[stage.id].status != Status.PENDING:
                    continue
                blocker = self._blocker(stage)
                if blocker is not None:
                    why = f"not run: stage {blocker!r} did not succeed"
                    await self._ended(StageResult(id=stage.id, status=Status.SKIPPED), why)
                    changed = True
                elif all(self._results[d].status == Status.SUCCEEDED for d in stage.after):
                    self._results[stage.id].status = Status.RUNNING
                    self._running[stage.id] = asyncio.create_task(self._stage(stage))

    def _blocker(self, stage: Stage) -> str | None:
        """The first stage this one runs after that ended without succeeding."""
        for dep in stage.after:
            status = self._results[dep].status
            if status in FINAL and status != Status.SUCCEEDED:
                return dep
        return None

    async def _ended(self, result: StageResult, announce: str | None = None) -> None:
        """Records a stage's end and logs the job's progress (and, for a stage that never
        ran, the stage's own final event, with `announce` as its message)."""
        self._results[result.id].CopyFrom(result)
        if announce is not None:
            await self._wf.progress(result.id, result.status, announce, 1.0)
        if result.status in (Status.FAILED, Status.TIMED_OUT) and self.failed is None:
            self.failed = result
        done = sum(r.status in FINAL for r in self._results.values())
        total = len(self._results)
        await self._wf.progress(
            "", Status.STATUS_UNSPECIFIED, f"{done} of {total} stages done", done / total
        )

    async def _stop(self) -> None:
        """Stops every running stage and waits until each has."""
        running = [self._running[s.id] for s in self._stages if s.id in self._running]
        for task in running:
            task.cancel()
        if running:
            await workflow.wait(running)
        for stage in self._stages:
            stopped = self._running.pop(stage.id, None)
            if stopped is None:
                continue
            if stopped.cancelled():  # stopped before it began: it logged nothing
                await self._ended(StageResult(id=stage.id, status=Status.CANCELLED), "cancelled")
            else:
                await self._ended(stopped.result())

    async def _close(self, status: Status.ValueType, why: str) -> None:
        for stage in self._stages:
            if self._results[stage.id].status == Status.PENDING:
                await self._ended(StageResult(id=stage.id, status=status), why)

    async def _stage(self, stage: Stage) -> StageResult:
        """One stage from RUNNING to its final event; its outcome is the result, never raised."""
        result = StageResult(id=stage.id)
        try:
            await self._wf.progress(stage.id, Status.RUNNING, "running")
            output = await self._bounded(stage)
        except _TimedOut:
            result.status = Status.TIMED_OUT
            result.error.CopyFrom(graphs.timed_out(stage))
        except ActivityError as err:
            result.status = _status_of(err)
            if result.status != Status.CANCELLED:
                result.error.CopyFrom(self._wf.failure_status(err))
        except asyncio.CancelledError:
            result.status = Status.CANCELLED
        else:
            result.status = Status.SUCCEEDED
            if isinstance(output, pipelines_pb2.EmbedOutput):
                result.embed.CopyFrom(output)
            else:
                result.generate.CopyFrom(output)
        # Ended already: a stop asked for now changes nothing, the final event is still due.
        with contextlib.suppress(asyncio.CancelledError):
            await self._wf.progress(stage.id, result.status, _message(result), 1.0)
        return result

    async def _bounded(self, stage: Stage) -> Output:
        """The stage's work, stopped when its budget runs out (raising _TimedOut)."""
        budget = graphs.budget(stage)
        work = asyncio.create_task(self._work(stage, budget))
        try:
            await workflow.wait([work], timeout=budget.total_seconds() if budget else None)
        except asyncio.CancelledError:
            return await self._halt(work)
        if work.done():
            return work.result()
        try:
            return await self._halt(work)
        except (ActivityError, asyncio.CancelledError) as e:
            raise _TimedOut from e

    async def _halt(self, work: asyncio.Task[Output]) -> Output:
        """Stops the work and waits until it has stopped, whatever arrives meanwhile: its
        activity confirms the stop, so nothing of it reaches the log afterwards."""
        self._wf.halt(work)
        while not work.done():
            with contextlib.suppress(asyncio.CancelledError):
                await workflow.wait([work])
        return work.result()

    async def _work(self, stage: Stage, budget: timedelta | None) -> Output:
        if stage.HasField("embed"):
            return await self._wf.embed(stage.embed, budget=budget)
        texts = {
            d: self._results[d].generate.text
            for d in stage.after
            if self._results[d].HasField("generate")
        }
        request = stage.generate
        start = inference_pb2.GenerateStart(
            model=request.model, prompt=graphs.fill(request.prompt, texts), params=request.params
        )
        task = tasks_pb2.GenerationTask(stage=stage.id, start=start)
        # The stage's timer stops the generation; the activity's own timeout, later, only
        # backs it (were it first, the job could end before the generation had stopped).
        backstop = budget + STOP_GRACE if budget else None
        return await self._wf.stream_generation(task, budget=backstop)

    def _output(self) -> pipelines_pb2.StagesOutput:
        return graphs.stages_output([self._results[s.id] for s in self._stages])


def _status_of(err: ActivityError) -> Status.ValueType:
    if isinstance(err.cause, CancelledError):
        return Status.CANCELLED
    if isinstance(err.cause, TimeoutError):  # the activity's own timeout beat the stage's
        return Status.TIMED_OUT
    return Status.FAILED


def _message(result: StageResult) -> str:
    if result.HasField("error"):
        return str(result.error.message)
    return Status.Name(result.status).lower().replace("_", " ")
