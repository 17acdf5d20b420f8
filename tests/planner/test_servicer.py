"""JobService's contract on the wire: identity, isolation, validation, ids, lookups, lists."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from temporalio.client import Client, WorkflowExecutionStatus

from switchboard.api.jobs.v1 import jobs_pb2, pipelines_pb2
from switchboard.api.jobs.v1.events_pb2 import JobEvent
from switchboard.common.jobref import JobRef
from switchboard.planner.api.servicer import check_pipeline
from switchboard.planner.shared.errors import PipelineInputMismatch
from switchboard.planner.stores import events

from .support import INTERNAL_TOKEN, Planner, create_request, eventually, reason, states

Job = jobs_pb2.Job


async def _fails(call: object) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call  # type: ignore[misc]
    return caught.value


@pytest.mark.asyncio
async def test_missing_or_bad_client_id_is_unauthenticated(planner: Planner) -> None:
    request = create_request("echo", "hi there")
    missing = await _fails(planner.stub.CreateJob(request))
    assert missing.code() == grpc.StatusCode.UNAUTHENTICATED
    assert reason(missing) == "CLIENT_ID_MISSING"
    bad_id = (("x-client-id", "a/b"), ("x-switchboard-internal", INTERNAL_TOKEN))
    bad = await _fails(planner.stub.CreateJob(request, metadata=bad_id))
    assert bad.code() == grpc.StatusCode.UNAUTHENTICATED
    assert reason(bad) == "CLIENT_ID_INVALID"


@pytest.mark.asyncio
async def test_client_id_is_believed_only_with_the_internal_token(planner: Planner) -> None:
    job = await planner.create()
    request = jobs_pb2.GetJobRequest(name=job.name)
    claimed = ("x-client-id", planner.client_id)
    for untrusted in ((claimed,), (claimed, ("x-switchboard-internal", "guessed"))):
        refused = await _fails(planner.stub.GetJob(request, metadata=untrusted))
        assert refused.code() == grpc.StatusCode.UNAUTHENTICATED
        assert reason(refused) == "CLIENT_ID_INVALID"
    trusted = (claimed, ("x-switchboard-internal", INTERNAL_TOKEN))
    assert (await planner.stub.GetJob(request, metadata=trusted)).name == job.name


@pytest.mark.asyncio
async def test_another_clients_job_is_not_found(planner: Planner) -> None:
    job = await planner.create()
    other = planner.md("someone-else")
    calls = [
        planner.stub.GetJob(jobs_pb2.GetJobRequest(name=job.name), metadata=other),
        planner.stub.CancelJob(jobs_pb2.CancelJobRequest(name=job.name), metadata=other),
        planner.stub.GetJobResult(jobs_pb2.GetJobResultRequest(name=job.name), metadata=other),
    ]
    for call in calls:
        error = await _fails(call)
        assert (error.code(), reason(error)) == (grpc.StatusCode.NOT_FOUND, "JOB_NOT_FOUND")
    watch = planner.stub.WatchJob(jobs_pb2.WatchJobRequest(name=job.name), metadata=other)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for _ in watch:
            pass
    assert reason(caught.value) == "JOB_NOT_FOUND"
    # The owner still sees it.
    assert states(await planner.watch(job.name))[-1] == "SUCCEEDED"


@pytest.mark.asyncio
async def test_invalid_requests_are_rejected_with_a_reason(planner: Planner) -> None:
    empty = create_request("echo", "")
    empty_prompt = await _fails(planner.stub.CreateJob(empty, metadata=planner.md()))
    assert empty_prompt.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert reason(empty_prompt) == "VALIDATION_FAILED"
    bad_id = create_request("echo", "hi there", job_id="Not_A_Valid_Id")
    error = await _fails(planner.stub.CreateJob(bad_id, metadata=planner.md()))
    assert reason(error) == "VALIDATION_FAILED"
    bad_name = jobs_pb2.GetJobRequest(name="jobs/UPPER")
    error = await _fails(planner.stub.GetJob(bad_name, metadata=planner.md()))
    assert reason(error) == "VALIDATION_FAILED"
    assert planner.fake.starts == []


def test_pipeline_must_match_the_input_kind() -> None:
    job = Job(pipeline="generate", input=pipelines_pb2.JobInput())
    with pytest.raises(PipelineInputMismatch):
        check_pipeline(job)
    job.input.generate.model = "echo"
    check_pipeline(job)
    job.pipeline = "embed"
    with pytest.raises(PipelineInputMismatch):
        check_pipeline(job)


@pytest.mark.parametrize(
    ("pipeline", "kind"),
    [("ingest-document", "ingest_document"), ("fan-out", "fan_out")],
)
def test_a_pipeline_name_maps_to_its_input_with_underscores(pipeline: str, kind: str) -> None:
    job = Job(pipeline=pipeline)
    getattr(job.input, kind).SetInParent()
    check_pipeline(job)
    job.pipeline = kind  # the field's own spelling is not a pipeline name
    with pytest.raises(PipelineInputMismatch):
        check_pipeline(job)


@pytest.mark.asyncio
async def test_duplicate_job_id_returns_the_same_job_or_conflicts(planner: Planner) -> None:
    first = await planner.create(job_id="my-job-1", labels={"team": "a"})
    assert first.name == "jobs/my-job-1"
    await planner.watch(first.name)

    again = await planner.create(job_id="my-job-1", labels={"team": "a"})
    assert again.name == first.name and again.create_time == first.create_time
    assert again.state == Job.SUCCEEDED
    different = create_request("echo", "another prompt", job_id="my-job-1")
    error = await _fails(planner.stub.CreateJob(different, metadata=planner.md()))
    assert (error.code(), reason(error)) == (grpc.StatusCode.ALREADY_EXISTS, "JOB_ALREADY_EXISTS")
    assert states(await planner.stored(first.name)).count("QUEUED") == 1
    assert len(planner.fake.starts) == 1
    # The same id under another client is another job.
    other = await planner.stub.CreateJob(
        create_request("echo", "hi there", job_id="my-job-1"), metadata=planner.md("other")
    )
    assert other.client == "other" and other.state == Job.QUEUED


@pytest.mark.asyncio
async def test_created_job_is_queued_with_its_fields(planner: Planner) -> None:
    job = await planner.create(labels={"env": "test"})
    assert job.name.startswith("jobs/j-") and len(job.name) == len("jobs/j-") + 20
    assert (job.state, job.pipeline, job.client) == (Job.QUEUED, "generate", planner.client_id)
    assert dict(job.labels) == {"env": "test"}
    assert job.create_time.seconds > 0
    assert job.input.generate.model == "echo"


@pytest.mark.asyncio
async def test_result_before_the_end_is_not_finished(planner: Planner) -> None:
    job = await planner.create(model="slow")
    error = await _fails(planner.result(job.name))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert reason(error) == "JOB_NOT_FINISHED"
    assert (await planner.get(job.name)).state in (Job.QUEUED, Job.RUNNING)
    await planner.cancel(job.name)
    assert states(await planner.watch(job.name))[-1] == "CANCELLED"


@pytest.mark.asyncio
async def test_watch_resumes_after_a_cursor(planner: Planner) -> None:
    job = await planner.create(prompt="a b c")
    everything = await planner.watch(job.name)
    running = next(e for e in everything if e.state_changed.state == "RUNNING")

    rest = await planner.watch(job.name, after=running.cursor)

    assert [e.cursor for e in rest] == [e.cursor for e in everything][2:]
    assert states(rest) == ["SUCCEEDED"]
    assert await planner.watch(job.name, after=everything[-1].cursor) == []  # seen the end
    watch = planner.stub.WatchJob(
        jobs_pb2.WatchJobRequest(name=job.name, after_cursor="not-a-cursor"), metadata=planner.md()
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for _ in watch:
            pass
    assert (caught.value.code(), reason(caught.value)) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_CURSOR",
    )


@pytest.mark.asyncio
async def test_watch_of_a_finished_job_whose_log_expired_gets_its_end(
    planner: Planner, temporal_client: Client
) -> None:
    job = await planner.create(prompt="a b c")
    await planner.watch(job.name)
    wid = JobRef.from_name(planner.client_id, job.name).workflow_id

    async def closed() -> bool:
        described = await temporal_client.get_workflow_handle(wid).describe()
        return described.status == WorkflowExecutionStatus.COMPLETED

    await eventually(closed)  # the workflow closes just after its terminal event is logged
    ref = JobRef.from_workflow_id(wid)
    await planner.valkey.delete(events.stream_key(ref), f"sb:{{{wid}}}:states")

    seen = await planner.watch(job.name)

    assert states(seen) == ["SUCCEEDED"] and len(seen) == 1


@pytest.mark.asyncio
async def test_list_jobs_pages_through_the_callers_jobs_only(planner: Planner) -> None:
    names = {(await planner.create()).name for _ in range(3)}
    await planner.stub.CreateJob(create_request("echo", "not mine"), metadata=planner.md("other"))

    async def listed() -> bool:
        page = await planner.stub.ListJobs(jobs_pb2.ListJobsRequest(), metadata=planner.md())
        return len(page.jobs) == 3

    await eventually(listed)
    first = await planner.stub.ListJobs(
        jobs_pb2.ListJobsRequest(page_size=2), metadata=planner.md()
    )
    assert len(first.jobs) == 2 and first.next_page_token
    second = await planner.stub.ListJobs(
        jobs_pb2.ListJobsRequest(page_size=2, page_token=first.next_page_token),
        metadata=planner.md(),
    )
    assert {j.name for j in [*first.jobs, *second.jobs]} == names
    assert all(j.client == planner.client_id for j in [*first.jobs, *second.jobs])
    # Not base64; base64 of "not-a-token"; a real token but of another client.
    bad_tokens = [("!!!", None), ("bm90LWEtdG9rZW4", None), (first.next_page_token, "other")]
    for token, client in bad_tokens:
        bad = jobs_pb2.ListJobsRequest(page_token=token)
        error = await _fails(planner.stub.ListJobs(bad, metadata=planner.md(client)))
        assert (error.code(), reason(error)) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_PAGE_TOKEN",
        )


async def _blocked_clients(planner: Planner) -> int:
    info = await planner.valkey.info("clients")
    return int(info["blocked_clients"])


@pytest.mark.asyncio
async def test_watch_stops_when_the_client_goes_away(planner: Planner) -> None:
    job = await planner.create(model="silent")
    call = planner.stub.WatchJob(jobs_pb2.WatchJobRequest(name=job.name), metadata=planner.md())
    seen = [await call.read(), await call.read()]
    assert [e.state_changed.state for e in seen if isinstance(e, JobEvent)] == ["QUEUED", "RUNNING"]

    async def blocked() -> bool:
        return await _blocked_clients(planner) > 0

    await eventually(blocked)  # the watch waits in XREAD BLOCK for the next event
    call.cancel()

    async def released() -> bool:
        return await _blocked_clients(planner) == 0

    await eventually(released)
    for _ in range(25):  # a watch that went on would be back in XREAD BLOCK (2 s) at once
        await asyncio.sleep(0.1)
        assert await _blocked_clients(planner) == 0
    await planner.cancel(job.name)
    assert states(await planner.watch(job.name))[-2:] == ["CANCELLING", "CANCELLED"]


@pytest.mark.asyncio
async def test_webhook_url_is_kept_and_part_of_the_same_request(planner: Planner) -> None:
    request = create_request("echo", "call me back", job_id="hooked-1")
    request.job.webhook_url = "https://hooks.example.com/switchboard"
    created = await planner.stub.CreateJob(request, metadata=planner.md())
    assert created.webhook_url == "https://hooks.example.com/switchboard"
    assert (await planner.get(created.name)).webhook_url == created.webhook_url

    request.job.webhook_url = "https://elsewhere.example.com/"
    error = await _fails(planner.stub.CreateJob(request, metadata=planner.md()))
    assert (error.code(), reason(error)) == (grpc.StatusCode.ALREADY_EXISTS, "JOB_ALREADY_EXISTS")


@pytest.mark.asyncio
async def test_fifty_concurrent_creates_with_one_key_make_one_job(planner: Planner) -> None:
    request = create_request("echo", "only once", job_id="once-only-1")
    replies = await asyncio.gather(
        *(planner.stub.CreateJob(request, metadata=planner.md()) for _ in range(50))
    )
    assert {r.name for r in replies} == {"jobs/once-only-1"}
    assert len({r.create_time.ToNanoseconds() for r in replies}) == 1
    events = await planner.watch("jobs/once-only-1")
    states = [e.state_changed.state for e in events if e.HasField("state_changed")]
    assert states == ["QUEUED", "RUNNING", "SUCCEEDED"]


@pytest.mark.asyncio
async def test_embed_pipeline_returns_one_vector_per_text_in_order(planner: Planner) -> None:
    texts = ["one", "two words", "and three words"]
    job = jobs_pb2.Job(
        pipeline="embed",
        input=pipelines_pb2.JobInput(
            embed=pipelines_pb2.EmbedInput(model="echo-embed", texts=texts)
        ),
    )
    created = await planner.stub.CreateJob(
        jobs_pb2.CreateJobRequest(job=job), metadata=planner.md()
    )
    events = await planner.watch(created.name)
    assert events[-1].state_changed.state == "SUCCEEDED"
    result = (await planner.result(created.name)).embed
    assert result.model == "echo-embed"
    assert [list(e.values) for e in result.embeddings] == [[3, 1], [9, 2], [15, 3]]


@pytest.mark.asyncio
async def test_embed_pipeline_with_an_unknown_model_fails_with_its_reason(
    planner: Planner,
) -> None:
    job = jobs_pb2.Job(
        pipeline="embed",
        input=pipelines_pb2.JobInput(embed=pipelines_pb2.EmbedInput(model="nope", texts=["x"])),
    )
    created = await planner.stub.CreateJob(
        jobs_pb2.CreateJobRequest(job=job), metadata=planner.md()
    )
    await planner.watch(created.name)
    failed = await planner.get(created.name)
    assert failed.state == Job.FAILED
    assert failed.error.code == grpc.StatusCode.NOT_FOUND.value[0]


@pytest.mark.asyncio
async def test_an_ingest_jobs_create_answer_leaves_its_document_out(planner: Planner) -> None:
    """CreateJob answers the job as GetJob shows it: an ingest job's document (up to 1 MiB)
    is not echoed, neither the first time nor on a repeat of the same create."""
    document = pipelines_pb2.Document(text="a document that is not sent back")
    ingest = pipelines_pb2.IngestDocumentInput(collection="not-echoed", document=document)
    job = Job(pipeline="ingest-document", input=pipelines_pb2.JobInput(ingest_document=ingest))
    request = jobs_pb2.CreateJobRequest(job=job, job_id="ingest-not-echoed-1")

    first = await planner.stub.CreateJob(request, metadata=planner.md())
    again = await planner.stub.CreateJob(request, metadata=planner.md())

    assert again.name == first.name == "jobs/ingest-not-echoed-1"
    for answer in (first, again):
        shown = answer.input.ingest_document
        assert (shown.collection, shown.HasField("document")) == ("not-echoed", True)
        assert shown.document.WhichOneof("content") is None
        assert b"not sent back" not in answer.SerializeToString()
