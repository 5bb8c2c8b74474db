"""Reading a Server-Sent Events answer in the tests, event by event, as an EventSource would."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from aiohttp import ClientResponse

from tests.api.helpers import Client


@dataclass(frozen=True)
class Event:
    """One dispatched event: its type, its id field as sent (None: no id line) and its data."""

    name: str
    id: str | None
    data: str

    def json(self) -> Any:
        return json.loads(self.data)


class EventReader:
    """The events of one ``text/event-stream`` answer, parsed as they arrive (in a task of its own,
    so that waiting for an event with a timeout never loses half a line)."""

    def __init__(self, response: ClientResponse) -> None:
        self.response = response
        self.events: asyncio.Queue[Event | None] = asyncio.Queue()
        self.comments: list[str] = []
        self.retry: int | None = None
        self.ended = asyncio.Event()
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        name: str = "message"
        ident: str | None = None
        data: list[str] = []
        try:
            while line := await self.response.content.readline():
                text = line.decode("utf-8").rstrip("\r\n")
                if text == "":
                    if data:
                        await self.events.put(Event(name, ident, "\n".join(data)))
                    name, ident, data = "message", None, []
                    continue
                field, _, value = text.partition(":")
                value = value[1:] if value.startswith(" ") else value
                if field == "":
                    self.comments.append(value)
                elif field == "event":
                    name = value
                elif field == "id":
                    ident = value
                elif field == "data":
                    data.append(value)
                elif field == "retry":
                    self.retry = int(value)
        except Exception:  # the connection ended under the reader: the stream is over
            pass
        finally:
            self.ended.set()
            await self.events.put(None)

    async def next(self, timeout: float = 5.0) -> Event:
        """The next event; TimeoutError if none comes in ``timeout`` seconds, EOFError at the end."""
        event = await asyncio.wait_for(self.events.get(), timeout)
        if event is None:
            await self.events.put(None)
            raise EOFError("the stream ended")
        return event

    async def none_within(self, seconds: float) -> None:
        """Assert that no event arrives in ``seconds``."""
        with contextlib.suppress(TimeoutError):
            event = await self.next(seconds)
            raise AssertionError(f"an event arrived: {event}")

    async def close(self) -> None:
        self.response.close()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


@contextlib.asynccontextmanager
async def stream(client: Client, poll_id: str, **kwargs: Any) -> AsyncIterator[EventReader]:
    """An open results stream of ``poll_id`` (asserted 200 and ``text/event-stream``)."""
    response = await client.get(f"/api/v1/polls/{poll_id}/results/stream", **kwargs)
    assert response.status == 200, await response.text()
    assert response.content_type == "text/event-stream"
    reader = EventReader(response)
    try:
        yield reader
    finally:
        await reader.close()
