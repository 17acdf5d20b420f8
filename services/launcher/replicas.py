"""How many replicas of each replicated service a stack runs, and what each is called.

`switchboard up --replicas planner=2,inference=2,worker=2,edge=3`. The first replica keeps
the service's own name (`planner`) and the others are numbered from 2 (`planner-2`), so a
default stack (two edges, one of everything else) has exactly the processes it always had.
Each replica's ports come from the stack's block (`ports.REPLICA_OFFSETS`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, fields

from .ports import REPLICA_OFFSETS, Ports

_NAME = re.compile(r"^(?P<service>[a-z]+)(?:-(?P<index>[2-9]|[1-9][0-9]+))?$")


def name(service: str, index: int) -> str:
    """The process name of replica `index` (1 is the first) of `service`."""
    return service if index == 1 else f"{service}-{index}"


@dataclass(frozen=True)
class Replicas:
    edge: int = 2
    planner: int = 1
    worker: int = 1
    inference: int = 1

    def __post_init__(self) -> None:
        for service, count in self.counts().items():
            most = len(REPLICA_OFFSETS[service])
            if isinstance(count, bool) or not 1 <= count <= most:
                raise ValueError(
                    f"{service} replicas must be within 1..{most} (the ports a stack's block "
                    f"holds for it), got {count!r}"
                )

    @classmethod
    def parse(cls, text: str) -> Replicas:
        """`planner=2,edge=3`; services not named keep their default count."""
        counts: dict[str, int] = {}
        known = [f.name for f in fields(cls)]
        for item in filter(None, (part.strip() for part in text.split(","))):
            service, sep, value = item.partition("=")
            service = service.strip()
            if not sep or service not in known:
                raise ValueError(f"expected SERVICE=N with SERVICE one of {known}, got {item!r}")
            if service in counts:
                raise ValueError(f"{service} is named twice")
            try:
                counts[service] = int(value)
            except ValueError:
                raise ValueError(f"{service}: not a whole number: {value.strip()!r}") from None
        return cls(**counts)

    @classmethod
    def of_names(cls, names: Iterable[str]) -> Replicas:
        """The replica counts that produce these process names (a running stack's
        state.json): the highest replica number seen per service, at least the default."""
        counts = cls().counts()
        for process in names:
            match = _NAME.match(process)
            if match and match["service"] in counts:
                index = int(match["index"] or 1)
                counts[match["service"]] = max(counts[match["service"]], index)
        return cls(**counts)

    def counts(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def names(self, service: str) -> list[str]:
        """The process names of `service`'s replicas, first to last."""
        return [name(service, i) for i in range(1, self.counts()[service] + 1)]

    def ports(self, ports: Ports, service: str) -> list[tuple[int, ...]]:
        """Each replica's ports, in the order of `names`."""
        return [ports.replica(service, i) for i in range(1, self.counts()[service] + 1)]

    def all_ports(self, ports: Ports) -> list[int]:
        """Every port the replicas listen on."""
        return [
            p for service in self.counts() for group in self.ports(ports, service) for p in group
        ]

    def flag(self) -> str:
        """The `--replicas` value that gives these counts."""
        return ",".join(f"{service}={count}" for service, count in self.counts().items())
