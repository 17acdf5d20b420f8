"""The Temporal Web UI of the local stack, opened in Chromium: a job made through the public
API shows as its workflow, and its page says it completed."""

from __future__ import annotations

import time
from importlib.util import find_spec
from pathlib import Path

import httpx
import pytest

from switchboard.common.jobref import JobRef

from .conftest import API_KEY, Mesh

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        not CHROMIUM.is_file(),
        reason=f"no Chromium at {CHROMIUM}: scripts/bootstrap installs Debian's `chromium` "
        "with apt-get where it can",
    ),
    pytest.mark.skipif(
        find_spec("playwright") is None, reason="playwright (the dev extra) is not installed"
    ),
]
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]
AUTH = {"Authorization": f"Bearer {API_KEY}"}
CLIENT = "dev"  # the client of the stack's development key
WAIT_MS = 60_000


def _finished_job(mesh: Mesh) -> str:
    body = {
        "pipeline": "generate",
        "input": {"generate": {"model": "test-streamer", "prompt": "temporal ui", "params": {}}},
    }
    with httpx.Client(base_url=mesh.public, timeout=60, headers=AUTH) as client:
        reply = client.post("/v1/jobs", json=body)
        assert reply.status_code == 202, reply.text
        job_id = str(reply.json()["name"]).removeprefix("jobs/")
        deadline = time.monotonic() + 60
        while client.get(f"/v1/jobs/{job_id}").json()["state"] != "SUCCEEDED":
            assert time.monotonic() < deadline, "the job did not finish"
            time.sleep(0.2)
    return job_id


def test_the_web_ui_lists_a_jobs_workflow_and_shows_it_completed(mesh: Mesh) -> None:
    from playwright.sync_api import expect, sync_playwright

    job_id = _finished_job(mesh)
    workflow_id = JobRef(CLIENT, job_id).workflow_id
    ui = f"http://127.0.0.1:{mesh.ports.temporal_ui}"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(f"{ui}/namespaces/default/workflows")
            # The list is the UI's own visibility query; the job's workflow is in it by id.
            link = page.get_by_role("link", name=workflow_id)
            expect(link.first).to_be_visible(timeout=WAIT_MS)
            link.first.click()
            page.wait_for_url(lambda url: job_id in url, timeout=WAIT_MS)
            expect(page.get_by_text("Completed").first).to_be_visible(timeout=WAIT_MS)
        finally:
            browser.close()
