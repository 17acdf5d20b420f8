"""Idempotency keys on CreateJob: the key names the job (per client), the same request under
it returns that job, a different one is refused (IDEMPOTENCY_KEY_REUSED); requests compare
by the fingerprint stored with the workflow at start, not by the job memo."""

from __future__ import annotations

import asyncio
import uuid

import grpc
import pytest
from temporalio.client import Client

from switchboard.api.jobs.v1 import jobs_pb2
from switchboard.common.jobref import JobRef
from switchboard.planner.api import store
from switchboard.planner.flows.workflow import JobWorkflow
from switchboard.planner.shared import ids
from switchboard.planner.shared.tasks import MEMO_JOB

from .support import Planner, create_request, reason, states

Job = jobs_pb2.Job


def _keyed(key: str, prompt: str = "only once", **labels: str) -> jobs_pb2.CreateJobRequest:
    request = create_request("echo", prompt, labels=labels)
    request.idempotency_key = key
    return request


async def _fails(call: object) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call  # type: ignore[misc]
    return caught.value


def test_the_job_id_is_derived_from_the_key() -> None:
    job_id = ids.idempotent_job_id("order-42/charge")
    assert job_id == ids.idempotent_job_id("order-42/charge")
    assert job_id != ids.idempotent_job_id("order-42/refund")
    assert job_id.startswith("k-") and len(job_id) == 34


def test_the_fingerprint_covers_the_request_not_the_order_of_its_labels() -> None:
    job = create_request("echo", "hi", labels={"a": "1", "b": "2"}).job
    same = create_request("echo", "hi", labels={"b": "2", "a": "1"}).job
    same.client, same.name = "someone", "jobs/other"  # not part of the request
    assert store.fingerprint(job) == store.fingerprint(same)
    for changed in (
        create_request("echo", "hi!", labels={"a": "1", "b": "2"}).job,
        create_request("echo", "hi", labels={"a": "1"}).job,
    ):
        assert store.fingerprint(changed) != store.fingerprint(job)
    job.webhook_url = "https://hooks.example.com/"
    assert store.fingerprint(job) != store.fingerprint(same)


@pytest.mark.asyncio
async def test_fifty_concurrent_creates_with_one_idempotency_key_make_one_job(
    planner: Planner,
) -> None:
    key = f"charge-{uuid.uuid4()}"
    replies = await asyncio.gather(
        *(planner.stub.CreateJob(_keyed(key), metadata=planner.md()) for _ in range(50))
    )
    name = JobRef(planner.client_id, ids.idempotent_job_id(key)).name
    assert {r.name for r in replies} == {name}
    assert len({r.create_time.ToNanoseconds() for r in replies}) == 1
    assert states(await planner.watch(name)) == ["QUEUED", "RUNNING", "SUCCEEDED"]
    assert len(planner.fake.starts) == 1

    again = await planner.stub.CreateJob(_keyed(key), metadata=planner.md())  # a late retry
    assert (again.name, again.state) == (name, Job.SUCCEEDED)


@pytest.mark.asyncio
async def test_a_reused_key_with_another_request_is_refused(planner: Planner) -> None:
    key = f"k-{uuid.uuid4()}"
    created = await planner.stub.CreateJob(_keyed(key, team="a"), metadata=planner.md())
    for different in (_keyed(key, "another prompt", team="a"), _keyed(key, team="b")):
        error = await _fails(planner.stub.CreateJob(different, metadata=planner.md()))
        assert (error.code(), reason(error)) == (
            grpc.StatusCode.ALREADY_EXISTS,
            "IDEMPOTENCY_KEY_REUSED",
        )
    # The key is the caller's: another client's same key is another job.
    other = await planner.stub.CreateJob(_keyed(key, "another prompt"), metadata=planner.md("b"))
    assert other.name == created.name and other.client == "b"
    both = _keyed(key)
    both.job_id = "explicit-id"
    error = await _fails(planner.stub.CreateJob(both, metadata=planner.md()))
    assert reason(error) == "VALIDATION_FAILED"


@pytest.mark.asyncio
async def test_requests_compare_by_the_stored_fingerprint_not_the_job_memo(
    planner: Planner, temporal_client: Client
) -> None:
    """The job memo may keep less than the request (large document bytes are dropped): a job
    started with a reduced memo still matches its full request, and not another one."""
    key = f"doc-{uuid.uuid4()}"
    request = _keyed(key, "a long document " * 50)
    job_id = ids.idempotent_job_id(key)
    job = Job(
        name=JobRef(planner.client_id, job_id).name, state=Job.QUEUED, client=planner.client_id
    )
    job.MergeFrom(request.job)
    reduced = Job()
    reduced.CopyFrom(job)
    reduced.input.generate.prompt = "(dropped)"
    await temporal_client.start_workflow(
        JobWorkflow.run,
        job,
        id=JobRef(planner.client_id, job_id).workflow_id,
        task_queue=f"nobody-{uuid.uuid4().hex}",  # never runs: only its memo matters here
        memo={MEMO_JOB: reduced, store.MEMO_REQUEST: store.fingerprint(job)},
    )

    found = await planner.stub.CreateJob(request, metadata=planner.md())
    assert found.name == job.name and found.input.generate.prompt == "(dropped)"
    mismatch = _keyed(key, "(dropped)")  # what the memo says, but not what was asked
    error = await _fails(planner.stub.CreateJob(mismatch, metadata=planner.md()))
    assert reason(error) == "IDEMPOTENCY_KEY_REUSED"
    await temporal_client.get_workflow_handle(
        JobRef(planner.client_id, job_id).workflow_id
    ).terminate()


@pytest.mark.asyncio
async def test_a_job_started_without_a_fingerprint_compares_by_its_memo(
    planner: Planner, temporal_client: Client
) -> None:
    """Workflows started before fingerprints were stored still answer a repeated create."""
    job_id = f"old-{uuid.uuid4().hex[:8]}"
    request = create_request("echo", "from before", job_id=job_id)
    job = Job(
        name=JobRef(planner.client_id, job_id).name, state=Job.QUEUED, client=planner.client_id
    )
    job.MergeFrom(request.job)
    wid = JobRef(planner.client_id, job_id).workflow_id
    await temporal_client.start_workflow(
        JobWorkflow.run, job, id=wid, task_queue=f"nobody-{uuid.uuid4().hex}", memo={MEMO_JOB: job}
    )

    assert (await planner.stub.CreateJob(request, metadata=planner.md())).name == job.name
    other = create_request("echo", "something else", job_id=job_id)
    error = await _fails(planner.stub.CreateJob(other, metadata=planner.md()))
    assert reason(error) == "JOB_ALREADY_EXISTS"
    await temporal_client.get_workflow_handle(wid).terminate()
