"""What every benchmark collects: rows of figures, printed as they come, percentiles, and
closed loops of calls."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Figures:
    rows: list[dict[str, Any]]

    def add(self, **row: Any) -> None:
        self.rows.append(row)
        print(json.dumps(row), flush=True)


def pct(values: list[float], q: float) -> float:
    """The q-th percentile, to 0.01; NaN for no values."""
    return round(float(np.percentile(np.array(values), q)), 2) if values else float("nan")


def warm_up_calls(concurrency: int) -> int:
    """Calls a loop makes before it measures (connections, caches, the workers' first tasks):
    two per concurrent caller. A figure per call that counts them too divides by this plus
    the measured calls."""
    return 2 * concurrency


@dataclass
class Loop:
    """What a closed loop measured: each call's ms and the loop's seconds."""

    ms: list[float] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def per_s(self) -> float:
        return round(len(self.ms) / self.seconds, 1) if self.seconds else float("nan")


async def closed_loop(concurrency: int, total: int, once: Callable[[], Awaitable[None]]) -> Loop:
    """`total` calls of `once`, `concurrency` at a time, each started when one ends."""
    loop = Loop()
    remaining = total

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            start = time.perf_counter()
            await once()
            loop.ms.append((time.perf_counter() - start) * 1000)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    loop.seconds = time.perf_counter() - start
    return loop
