"""A tiny real HTTP/1.1 webhook receiver for the planner's webhook tests."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

# One answer: a status, or a status with extra response headers.
Reply = int | tuple[int, dict[str, str]]


@dataclass
class Receiver:
    """Answers each request with the next of `replies` (the last one over and over)."""

    replies: list[Reply]
    requests: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)
    # time.monotonic() of each request's arrival.
    times: list[float] = field(default_factory=list)
    port: int = 0

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        path = lines[0].split(" ")[1]
        headers = {
            k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:])
        }
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        self.requests.append((path, headers, body))
        self.times.append(time.monotonic())
        reply = self.replies[min(len(self.requests), len(self.replies)) - 1]
        status, extra = reply if isinstance(reply, tuple) else (reply, {})
        if 300 <= status < 400:
            extra = {"location": self.url("/elsewhere"), **extra}
        fields = "".join(f"{k}: {v}\r\n" for k, v in extra.items())
        writer.write(f"HTTP/1.1 {status} X\r\n{fields}content-length: 0\r\n\r\n".encode())
        await writer.drain()
        writer.close()


@asynccontextmanager
async def receiving(
    replies: list[Reply], tls: ssl.SSLContext | None = None
) -> AsyncIterator[Receiver]:
    receiver = Receiver(replies)
    server = await asyncio.start_server(receiver.handle, "127.0.0.1", 0, ssl=tls)
    receiver.port = server.sockets[0].getsockname()[1]
    try:
        yield receiver
    finally:
        server.close()
        await server.wait_closed()
