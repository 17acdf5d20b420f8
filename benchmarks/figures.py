"""What every benchmark collects: rows of figures, printed as they come, and percentiles."""

from __future__ import annotations

import json
from dataclasses import dataclass
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
