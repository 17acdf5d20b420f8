"""The planner client: unary calls translate failures, health reports the status name."""

from __future__ import annotations

import grpc
import pytest

from switchboard.api.jobs.v1 import jobs_pb2
from switchboard.common.errors import SwitchboardError
from switchboard.common.settings import Secret
from switchboard.edge.planner import Planner

from .conftest import StandInPlanner, job


@pytest.mark.asyncio
async def test_call_returns_the_reply_and_sends_metadata(planner: StandInPlanner) -> None:
    planner.jobs["jobs/job-1"] = job("job-1", jobs_pb2.Job.RUNNING)
    client = Planner(planner.address)
    try:
        request = jobs_pb2.GetJobRequest(name="jobs/job-1")
        reply = await client.call("GetJob", request, (("x-client-id", "c1"),))
        assert reply == planner.jobs["jobs/job-1"]
        assert planner.calls[0].metadata["x-client-id"] == "c1"
        with pytest.raises(SwitchboardError) as caught:
            await client.call("GetJob", jobs_pb2.GetJobRequest(name="jobs/none-1"), ())
        assert caught.value.reason == "JOB_NOT_FOUND"
        assert await client.health() == "SERVING"
    finally:
        await client.close()


@pytest.mark.asyncio
async def test_unreachable_planner_is_unavailable(no_planner_address: str) -> None:
    client = Planner(no_planner_address)
    try:
        with pytest.raises(SwitchboardError) as caught:
            await client.call("ListJobs", jobs_pb2.ListJobsRequest(), ())
        assert caught.value.code == grpc.StatusCode.UNAVAILABLE
        assert await client.health() == "UNAVAILABLE"
    finally:
        await client.close()


@pytest.mark.asyncio
async def test_every_call_carries_the_internal_token(planner: StandInPlanner) -> None:
    """The planner believes x-client-id only beside it (docs/planner.md)."""
    planner.jobs["jobs/job-1"] = job("job-1", jobs_pb2.Job.RUNNING)
    client = Planner(planner.address, Secret("edge-token"))
    try:
        await client.call("GetJob", jobs_pb2.GetJobRequest(name="jobs/job-1"), ())
        watch = client.watch(jobs_pb2.WatchJobRequest(name="jobs/job-1"), ())
        async for _ in watch:
            pass
        assert [c.metadata.get("x-switchboard-internal") for c in planner.calls] == [
            "edge-token",
            "edge-token",
        ]
    finally:
        await client.close()
    without = Planner(planner.address)
    try:
        await without.call("GetJob", jobs_pb2.GetJobRequest(name="jobs/job-1"), ())
        assert "x-switchboard-internal" not in planner.calls[-1].metadata
    finally:
        await without.close()
