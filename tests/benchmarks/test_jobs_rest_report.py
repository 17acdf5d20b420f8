"""The REST jobs benchmark's markdown: one run's section and the before/after table."""

from __future__ import annotations

import math
from typing import Any

from benchmarks.jobs_rest_report import (
    before_after_markdown,
    before_after_table,
    figure,
    jobs_rest_markdown,
)
from benchmarks.report import with_head, with_section


def run(ttft_job: float, jobs_per_s: float, create: float, commit: str) -> list[dict[str, Any]]:
    return [
        {"bench": "ttft", "level": "gRPC", "path": "inference Generate (direct)", "p50_ms": 3.0},
        {"bench": "ttft", "level": "gRPC", "path": "CreateJob → WatchJob", "p50_ms": ttft_job,
         "added_p50_ms": f"{ttft_job - 3.0:+.1f}"},
        {"bench": "throughput", "path": "/v1/embeddings", "per_s": 250.0, "p50_ms": 30.0},
        {"bench": "throughput", "path": "POST /v1/jobs, Prefer: wait=10", "per_s": jobs_per_s,
         "p50_ms": 8000 / jobs_per_s, "p99_ms": 2000.0, "vs_direct": f"{jobs_per_s / 250:.2f}x"},
        {"bench": "create", "path": "CreateJob (gRPC)", "p50_ms": create},
        {"bench": "env", "commit": commit, "load": "1.0 at the start, 2.0 at the end"},
    ]  # fmt: skip


def test_figure_finds_a_row_by_its_path_start_and_is_nan_without_one() -> None:
    rows = run(108.0, 8.0, 48.0, "abc")
    assert figure(rows, "ttft", "CreateJob", "p50_ms") == 108.0
    assert figure(rows, "throughput", "POST /v1/jobs, Prefer", "per_s") == 8.0
    assert math.isnan(figure(rows, "terminal", "SSE follower (generate", "p50_ms"))
    assert math.isnan(figure(rows, "create", "CreateJob", "p99_ms"))


def test_before_after_table_gives_each_measure_both_figures_and_their_ratio() -> None:
    table = before_after_table(run(108.0, 8.0, 48.0, "a"), run(36.0, 80.0, 6.0, "b"))
    lines = {line.split(" | ")[0].strip("| "): line for line in table.splitlines()}
    assert lines["first token, CreateJob → WatchJob (gRPC)"].startswith(
        "| first token, CreateJob → WatchJob (gRPC) | 108 ms | 36 ms | 0.33x |"
    )
    assert "| 8/s | 80/s | 10.0x | ≥ 100 |" in lines["embed jobs, Prefer: wait, c=8, per s"]
    assert "| 0.03x | 0.32x | 10.7x |" in lines["embed jobs, Prefer: wait, against /v1/embeddings"]
    assert (
        "| 105 ms | 33 ms | 0.31x | ≤ 40 |" in lines["first token, job over Generate (gRPC), added"]
    )
    assert "| 48 ms | 6 ms | 0.12x | ≤ 10 |" in lines["CreateJob p50 (gRPC, c=8)"]
    # a measure neither run has: empty cells, no ratio
    assert lines["terminal event stored → SSE follower (embed, c=8), p50"].endswith("|  |  |  |  |")


def test_before_after_section_names_both_commits_and_loads() -> None:
    text = before_after_markdown(run(108.0, 8.0, 48.0, "1111111"), run(36.0, 80.0, 6.0, "2222222"))
    assert "`1111111` (before) and `2222222` (after)" in text
    assert text.count("1.0 at the start, 2.0 at the end") == 2


def test_one_runs_section_replaces_only_its_own_on_the_page() -> None:
    page = "# Benchmarks\n\n<!-- section: jobs -->\nold jobs\n<!-- /section: jobs -->\n"
    first = with_section(page, "jobs-rest", jobs_rest_markdown(run(108.0, 8.0, 48.0, "abc")))
    again = with_section(first, "jobs-rest", jobs_rest_markdown(run(50.0, 9.0, 40.0, "def")))
    assert "old jobs" in again
    assert again.count("<!-- section: jobs-rest -->") == 1
    assert "Commit `def`" in again and "Commit `abc`" not in again
    assert "| gRPC | CreateJob → WatchJob |" in again


def test_a_new_inference_head_keeps_every_other_benchmarks_section() -> None:
    page = with_section("# Benchmarks\n\nold inference figures\n", "jobs-rest", "rest figures")
    page = with_section(page, "jobs-before-after", "before/after table")

    rewritten = with_head(page, "# Benchmarks\n\nnew inference figures\n")

    assert "old inference figures" not in rewritten
    assert rewritten.startswith("# Benchmarks\n\nnew inference figures\n\n<!-- section: jobs-rest")
    assert "rest figures" in rewritten and "before/after table" in rewritten
    assert with_head("", "# Benchmarks\n") == "# Benchmarks\n"


def cpu_rows() -> list[dict[str, Any]]:
    by_process = {"temporal": 40.0, "worker": 30.0, "planner": 12.0, "edge": 2.0}
    by_process |= {"edge-2": 1.5, "chroma": 0.5, "supervisor": 0.25, "load generator": 9.0}
    return [
        {"bench": "cpu", "path": "/v1/embeddings", "total_ms": 6.0, "cores": 2}
        | {"ceiling_per_s": 333.3, "by_process": {"edge": 3.0, "inference": 3.0}},
        {"bench": "cpu", "path": "POST /v1/jobs, Prefer: wait=10", "total_ms": 86.25}
        | {"cores": 2, "ceiling_per_s": 23.2, "by_process": by_process},
    ]


def test_a_run_with_cpu_rows_has_the_cpu_table_after_the_throughput_table() -> None:
    text = jobs_rest_markdown(run(36.0, 80.0, 6.0, "abc") + cpu_rows())

    heading = "### CPU per call or job, by process (same loops)"
    assert text.index("### One text through") < text.index(heading) < text.index("### The create")
    table = text[text.index(heading) :].split("\n\n")[1].splitlines()
    columns = [c.strip() for c in table[0].strip("|").split("|")]
    assert columns[:3] == ["path", "total_ms", "ceiling_per_s"]
    assert columns[-2:] == ["other", "load generator"]
    job = dict(zip(columns, (c.strip() for c in table[3].strip("|").split("|")), strict=True))
    assert job["path"] == "POST /v1/jobs, Prefer: wait=10"
    assert (job["total_ms"], job["ceiling_per_s"]) == ("86.25", "23.2")
    assert (job["temporal"], job["edge"], job["other"]) == ("40.0", "3.5", "0.8")  # edge-2, chroma
    assert (job["load generator"], job["triton"]) == ("9.0", "")
    assert "`ceiling_per_s` = 2 cores x 1000 / `total_ms`" in text


def test_a_run_without_cpu_rows_renders_without_the_cpu_table() -> None:
    old = run(108.0, 8.0, 48.0, "abc")
    text = jobs_rest_markdown(old)
    assert "### One text through" in text and "CPU per call" not in text
    assert "CPU per call" not in before_after_markdown(
        old, run(36.0, 80.0, 6.0, "def") + cpu_rows()
    )
