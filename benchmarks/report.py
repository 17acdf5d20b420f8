"""The benchmarks' figures as the markdown page kept in docs/benchmarks.md.

benchmarks.inference writes the page's head (everything before the first section) with
`with_head`; every other benchmark writes one section of its own with `write_section`,
between markers, replacing only that section on a re-run.
"""

from __future__ import annotations

import platform
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

EMBED_MODEL = "all-minilm-l6-v2"  # the model benchmarks.inference embeds with


def report_markdown(rows: list[dict[str, Any]]) -> str:
    def table(bench: str, columns: list[str]) -> str:
        lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        for row in rows:
            if row["bench"] == bench:
                lines.append("| " + " | ".join(str(row.get(c, "")) for c in columns) + " |")
        return "\n".join(lines)

    direct = {
        (r["concurrency"]): r for r in rows if r["bench"] == "embed" and r["path"] == "direct"
    }
    ratios = []
    for r in rows:
        if r["bench"] == "embed" and r["path"] != "direct":
            base = direct[r["concurrency"]]
            ratios.append(
                f"- {r['path']} at c={r['concurrency']}: p50 {r['p50_ms'] / base['p50_ms']:.2f}x,"
                f" throughput {r['per_s'] / base['per_s']:.2f}x direct"
            )
    return (
        "\n\n".join(
            [
                "# Benchmarks",
                f"Latest run: {time.strftime('%Y-%m-%d')}, {platform.machine()}, CPU only "
                "(2 cores; Triton, the mesh and the load generator share them). Reproduce with "
                "`make bench` (`python -m benchmarks.inference --write docs/benchmarks.md`).",
                f"## Embeddings (`{EMBED_MODEL}`, one text per call)",
                table("embed", ["path", "concurrency", "p50_ms", "p99_ms", "per_s"]),
                "Ratios against direct Triton in the same run:\n" + "\n".join(ratios),
                "## Triton dynamic batching (concurrency 16)",
                table("embed-batching", ["path", "avg_triton_batch"]),
                "## Token streams (one generation at a time)",
                table("stream", ["model", "path", "ttft_p50_ms", "ttft_p90_ms", "tokens_per_s"]),
                "## Cancellation",
                table(
                    "cancel",
                    [
                        "model",
                        "path",
                        "client_tokens_after_cancel_max",
                        "model_tokens_after_cancel_max",
                    ],
                ),
                "Cancel sent at the 5th token, 5 runs: the most deltas the client still received"
                " after it, and the most tokens the model produced after the 5th before it saw"
                " the cancel (from the model's own log line).",
            ]
        )
        + "\n"
    )


def markdown_table(rows: Sequence[dict[str, Any]], bench: str, columns: Sequence[str]) -> str:
    """The rows of one bench as a markdown table of the given columns."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        if row.get("bench") == bench:
            lines.append("| " + " | ".join(str(row.get(c, "")) for c in columns) + " |")
    return "\n".join(lines)


def run_line(command: str) -> str:
    """When and where the figures were taken, and how to take them again."""
    return (
        f"Latest run: {time.strftime('%Y-%m-%d')}, {platform.machine()}, CPU only (2 cores shared "
        f"by the whole mesh and the load generator). Reproduce with `{command}`."
    )


def with_section(page: str, name: str, section: str) -> str:
    """The page with `section` as its section `name`: replacing that section if the page has
    it, appended otherwise; the rest of the page stays as it was."""
    start, end = f"<!-- section: {name} -->", f"<!-- /section: {name} -->"
    block = f"{start}\n{section.strip()}\n{end}\n"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end) + r"\n?", re.DOTALL)
    if pattern.search(page):
        return pattern.sub(lambda _: block, page)
    return page.rstrip("\n") + "\n\n" + block


def with_head(page: str, head: str) -> str:
    """The page with `head` (benchmarks.inference's part) before its first section: the
    sections other benchmarks wrote stay, since some (a before/after table) cannot be taken
    again by a later run."""
    first = page.find("<!-- section: ")
    kept = page[first:] if first >= 0 else ""
    return head.rstrip("\n") + "\n\n" + kept if kept else head


def write_section(page: Path, name: str, section: str) -> None:
    """Writes `section` into the page file as its section `name` (see with_section)."""
    text = page.read_text() if page.exists() else "# Benchmarks\n"
    page.write_text(with_section(text, name, section))
