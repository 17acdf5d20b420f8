"""Inline stage graphs and fan-outs, checked before anything runs.

Pure functions over the contract's messages (no Temporal, no I/O), so the servicer refuses a
bad graph at CreateJob and the workflow's stage runner uses the same rules; also the outcomes
a graph or fan-out ends with (its StagesOutput, the job's error). A generate stage's prompt
quotes the text of a stage it runs after as `{{stage_id}}`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import timedelta

import grpc
from google.rpc import status_pb2

from switchboard.api.jobs.v1 import pipelines_pb2
from switchboard.common.errors import SwitchboardError

from . import errors
from .errors import InvalidStageGraph

# A quote names a stage by the contract's stage id pattern; other braces are left as text.
QUOTE = re.compile(r"\{\{([a-z][a-z0-9_-]{0,31})\}\}")
DEFAULT_BRANCH_TIMEOUT = timedelta(seconds=10)

Stage = pipelines_pb2.Stage
StageResult = pipelines_pb2.StageResult
Status = StageResult.Status


def quoted(prompt: str) -> list[str]:
    """The stage ids a prompt quotes, in order of first appearance."""
    return list(dict.fromkeys(QUOTE.findall(prompt)))


def fill(prompt: str, texts: Mapping[str, str]) -> str:
    """The prompt with each `{{id}}` of `texts` replaced by that text, in one pass (a
    replacement that itself holds `{{...}}` is not expanded again)."""
    return QUOTE.sub(lambda m: texts.get(m.group(1), m.group(0)), prompt)


def check_graph(graph: pipelines_pb2.StageGraph) -> None:
    """Raises InvalidStageGraph naming the first problem: a repeated id, an unknown
    dependency, a quote of a stage that is not a dependency (or has no text), a cycle."""
    kinds: dict[str, str | None] = {}
    for stage in graph.stages:
        if stage.id in kinds:
            raise _invalid(f"stage id {stage.id!r} is used twice", stage.id)
        kinds[stage.id] = stage.WhichOneof("kind")
    for stage in graph.stages:
        for dep in stage.after:
            if dep not in kinds:
                raise _invalid(f"stage {stage.id!r} runs after unknown stage {dep!r}", stage.id)
        _check_quotes(stage, kinds)
    cycle = find_cycle(graph.stages)
    if cycle:
        raise _invalid(f"the stages form a cycle: {' -> '.join(cycle)}", cycle[0])


def _check_quotes(stage: Stage, kinds: Mapping[str, str | None]) -> None:
    if not stage.HasField("generate"):
        return
    for name in quoted(stage.generate.prompt):
        if name not in stage.after:
            raise _invalid(
                f"stage {stage.id!r} quotes {{{{{name}}}}} but does not run after {name!r}",
                stage.id,
            )
        if kinds.get(name) != "generate":
            raise _invalid(
                f"stage {stage.id!r} quotes {{{{{name}}}}}, which is not a generate stage "
                "(only a generation's text can be quoted)",
                stage.id,
            )


def find_cycle(stages: Sequence[Stage]) -> list[str]:
    """One dependency cycle as `[a, b, ..., a]`; empty when there is none."""
    after = {s.id: list(s.after) for s in stages}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        path.append(node)
        for dep in after.get(node, ()):
            if state.get(dep) == 1:
                return [*path[path.index(dep) :], dep]
            if dep not in state and (found := visit(dep)):
                return found
        path.pop()
        state[node] = 2
        return []

    for stage in stages:
        if stage.id not in state and (found := visit(stage.id)):
            return found
    return []


def check_fan_out(fan_out: pipelines_pb2.FanOutInput) -> None:
    """Branch ids name branches in events and results, so they must differ; a minimum above
    the number of branches could never be met."""
    seen: set[str] = set()
    for branch in fan_out.branches:
        if branch.id in seen:
            raise _invalid(f"branch id {branch.id!r} is used twice", branch.id)
        seen.add(branch.id)
    if fan_out.min_succeeded > len(fan_out.branches):
        raise InvalidStageGraph(
            f"min_succeeded {fan_out.min_succeeded} exceeds the {len(fan_out.branches)} branches",
            metadata={"min_succeeded": str(fan_out.min_succeeded)},
        )


def check_input(job_input: pipelines_pb2.JobInput) -> None:
    """The checks of this module for the inputs they apply to; other inputs pass."""
    if job_input.HasField("graph"):
        check_graph(job_input.graph)
    elif job_input.HasField("fan_out"):
        check_fan_out(job_input.fan_out)


def fan_out_graph(fan_out: pipelines_pb2.FanOutInput) -> pipelines_pb2.StageGraph:
    """A fan-out as the graph it runs as: one independent generate stage per branch, each
    with the branch budget, partial results allowed."""
    budget = fan_out.branch_timeout.ToTimedelta() or DEFAULT_BRANCH_TIMEOUT
    graph = pipelines_pb2.StageGraph(allow_partial=True)
    for branch in fan_out.branches:
        stage = graph.stages.add(id=branch.id)
        stage.timeout.FromTimedelta(budget)
        stage.generate.CopyFrom(
            pipelines_pb2.GenerateInput(
                model=branch.model, prompt=branch.prompt, params=branch.params
            )
        )
    return graph


def stages_output(results: Sequence[StageResult]) -> pipelines_pb2.StagesOutput:
    """The result of a graph or fan-out: every stage's, in request order, and a summary."""
    succeeded = sum(r.status == Status.SUCCEEDED for r in results)
    return pipelines_pb2.StagesOutput(
        stages=results,
        succeeded=succeeded,
        total=len(results),
        summary=f"{succeeded} of {len(results)} succeeded",
    )


def stage_failed(result: StageResult) -> status_pb2.Status:
    """The job's error when a stage failed it: STAGE_FAILED with the stage's code, naming the
    stage and its own reason."""
    cause = SwitchboardError.from_status(result.error)
    status = Status.Name(result.status)
    return SwitchboardError(
        f"stage {result.id!r} {status.lower().replace('_', ' ')}: {cause.message}",
        reason=errors.STAGE_FAILED,
        code=cause.code,
        metadata={"stage": result.id, "stage_status": status, "stage_reason": cause.reason},
    ).to_status()


def too_few_succeeded(output: pipelines_pb2.StagesOutput, needed: int) -> status_pb2.Status:
    """The job's error when too few fan-out branches succeeded; its code is that of the first
    branch that did not."""
    first = next((r for r in output.stages if r.status != Status.SUCCEEDED), None)
    code = grpc.StatusCode.UNAVAILABLE
    if first is not None and first.HasField("error"):
        code = SwitchboardError.from_status(first.error).code
    return SwitchboardError(
        f"{output.summary}; at least {needed} must",
        reason=errors.TOO_FEW_SUCCEEDED,
        code=code,
        metadata={
            "succeeded": str(output.succeeded),
            "total": str(output.total),
            "min_succeeded": str(needed),
        },
    ).to_status()


def budget(stage: Stage) -> timedelta | None:
    """A stage's own time limit; None when it has none."""
    return stage.timeout.ToTimedelta() or None


def timed_out(stage: Stage) -> status_pb2.Status:
    """The error of a stage that ran past its budget."""
    seconds = budget(stage) or timedelta()
    reason = errors.GENERATION_TIMED_OUT if stage.HasField("generate") else errors.DEADLINE_EXCEEDED
    return SwitchboardError(
        f"stage {stage.id!r} ran past its {seconds.total_seconds():g} s budget",
        reason=reason,
        code=grpc.StatusCode.DEADLINE_EXCEEDED,
        metadata={"stage": stage.id},
    ).to_status()


def _invalid(message: str, stage_id: str) -> InvalidStageGraph:
    return InvalidStageGraph(message, metadata={"stage": stage_id})
