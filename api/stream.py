"""Live results as Server-Sent Events: ``GET /api/v1/polls/{pollId}/results/stream``.

One ``ResultsHub`` per app watches the ledger while any stream is open: every ``INTERVAL`` it folds
in what other processes appended (one freshness check for all the streams, not one each) and
compares each watched poll's tallies and status with what it last published. A change is
computed once, as the bytes of one SSE event, and every open stream of that poll is woken to write
those same bytes (in slices, with the votes' requests served between them); the more streams a
poll has, the further apart its events (``GAP_PER_STREAM``), so that writing them never crowds out
the votes. A stream that falls behind
(a slow reader) skips to the latest update: each event is the whole result, so nothing is lost by
skipping. With no stream open the hub does nothing at all.

The results route's visibility rules apply unchanged (``projections.queries.results_visible``):
while the caller may not see them, the stream says so in a ``hidden`` event (the results route's
403 error, as data) and sends no tallies; when they open (the poll closes, the caller votes) the
``results`` follow. Each ``results`` event's id is the ledger position its totals are counted up
to, and a client resuming with ``Last-Event-ID`` gets only what changed after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import msgspec
from aiohttp import web
from marshmallow import fields

from api.actions import authenticate, caller_id
from api.cors import CORS_HEADERS
from api.errors import ApiError, from_domain
from api.keys import LEDGER
from api.schemas import Strict, load
from api.views import results_json
from projections.errors import ResultsNotOpenError
from projections.model import Poll
from projections.queries import check_results_visible, get_poll, results_visible, tally
from projections.service import FRESHNESS, VoteLedger
from projections.state import LedgerState

log = logging.getLogger("vote_ledger.stream")

INTERVAL = 0.1  # seconds between two looks at the ledger while streams are open
# Writing one event to one stream costs the server about 25 µs (half of it the kernel's send), so a
# poll's events are spaced by this much per open stream of it, at least INTERVAL: with 1,000 streams
# one a second at most, and the writes take no more than 2.5 % of the event loop however fast the
# votes come (python -m bench.streams measures what that leaves of the vote path).
GAP_PER_STREAM = 0.001
WAKE_SLICE = 64  # streams woken in one pass of the event loop
KEEPALIVE = 15.0  # seconds between keep-alive comments (proxies close connections quiet for long)
RETRY_MS = 1000  # how long an EventSource waits before it reconnects
EVENT_STREAM = "text/event-stream"


class StreamQuerySchema(Strict):
    token = fields.String(metadata={
        "description": "The bearer token, for clients that cannot send Authorization (a browser's "
                       "EventSource); Authorization wins when both are given."
    })


STREAM_QUERY = StreamQuerySchema()


@dataclass(frozen=True, slots=True)
class Update:
    """A poll's results at one ledger position, encoded once for every stream of the poll."""

    seq: int  # the ledger position the totals are counted up to: the event's id
    results: bytes  # the ``results`` event
    hidden: bytes  # the ``hidden`` event, for callers who may not see them (empty if everyone may)


@dataclass(eq=False)
class Channel:
    """The open streams of one poll: the latest update, and what each stream waits on."""

    poll_id: str
    update: Update
    signature: tuple[object, ...]
    checked_ms: int
    streams: int = 0
    quiet_until: float = 0.0  # the event loop's time before which the poll publishes nothing new
    pings: int = 0  # keep-alives sent so far: a stream that saw fewer writes one
    closed: bool = False
    _waiting: list[asyncio.Future[None]] = field(default_factory=list)

    async def wake(self) -> None:
        """Wake every stream of the poll, each then to look at what changed: ``WAKE_SLICE`` at a
        time, with the event loop's other work (the votes) between two slices."""
        waiting, self._waiting = self._waiting, []
        for count, waiter in enumerate(waiting, 1):
            if not waiter.done():
                waiter.set_result(None)
            if count % WAKE_SLICE == 0:
                await asyncio.sleep(0)

    async def wait(self) -> None:
        """Until the next ``wake``."""
        waiter = asyncio.get_running_loop().create_future()
        self._waiting.append(waiter)
        await waiter


def _signature(poll: Poll, now_ms: int) -> tuple[object, ...]:
    """What a client sees of the poll: if it is the same, nothing is published."""
    return (poll.status, poll.public_status(now_ms), poll.total_votes,
            tuple((c.candidate_id, c.votes) for c in poll.candidates.values()))


def _event(name: str, seq: int | None, data: object) -> bytes:
    """One SSE event; an empty id resets the client's Last-Event-ID (it holds no results then)."""
    ident = "" if seq is None else str(seq)
    return b"event: %s\nid: %s\ndata: %s\n\n" % (name.encode(), ident.encode(), msgspec.json.encode(data))


KEEPALIVE_COMMENT = b": keep-alive\n\n"


class ResultsHub:
    """Watches the ledger for the open streams and computes each change once for all of them."""

    def __init__(
        self, interval: float = INTERVAL, keepalive: float = KEEPALIVE, gap_per_stream: float = GAP_PER_STREAM
    ) -> None:
        self.interval = interval
        self.keepalive = keepalive
        self.gap_per_stream = gap_per_stream
        self.computations = 0  # results encoded for the streams: one per change of a watched poll
        self.channels: dict[str, Channel] = {}
        self._ledger: VoteLedger | None = None
        self._task: asyncio.Task[None] | None = None
        self._joined = asyncio.Event()
        self._closing = False

    @property
    def streams(self) -> int:
        """How many streams are open."""
        return sum(c.streams for c in self.channels.values())

    async def running(self, app: web.Application) -> AsyncIterator[None]:
        """A ``cleanup_ctx``: watch the app's ledger from start-up to cleanup."""
        self._ledger = app[LEDGER]
        self._task = asyncio.create_task(self._watch(), name="results-hub")
        yield
        await self.close()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def close(self, app: web.Application | None = None) -> None:
        """End every open stream (``on_shutdown``: the server then stops at once, not after its
        shutdown timeout)."""
        self._closing = True
        for channel in list(self.channels.values()):
            channel.closed = True
            await channel.wake()

    def join(self, poll: Poll) -> Channel:
        """The channel of ``poll``, created (and its results computed) by its first stream."""
        if self._closing:
            raise ApiError(503, "shutting_down", "the service is shutting down; reconnect shortly",
                           headers={"Retry-After": "1"})
        channel = self.channels.get(poll.poll_id)
        if channel is None:
            ledger = self._ready()
            now = ledger.clock()
            head = ledger.state.head_seq
            channel = Channel(poll.poll_id, self._compute(poll, head, now), _signature(poll, now), now)
            self.channels[poll.poll_id] = channel
            self._joined.set()
        channel.streams += 1
        return channel

    def leave(self, channel: Channel) -> None:
        """A stream ended; the poll is forgotten with its last stream."""
        channel.streams -= 1
        if channel.streams <= 0 and self.channels.get(channel.poll_id) is channel:
            del self.channels[channel.poll_id]

    def _ready(self) -> VoteLedger:
        if self._ledger is None:
            raise RuntimeError("the results hub has not started")
        return self._ledger

    def _compute(self, poll: Poll, head: int, now_ms: int) -> Update:
        """The events of ``poll`` at ``head``: its results (the results route's answer, and the
        poll's status) and, if anyone may not see them, the hidden notice."""
        self.computations += 1
        status = poll.public_status(now_ms)
        results = _event("results", head, {**results_json(tally(poll, head)), "status": status})
        return Update(head, results, _hidden(self._ready().state, poll, head, status, now_ms))

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        next_ping = loop.time() + self.keepalive
        while True:
            if not self.channels:
                self._joined.clear()
                await self._joined.wait()
                next_ping = loop.time() + self.keepalive
            await asyncio.sleep(self.interval)
            try:
                await self._look()
            except Exception:  # a defect: the streams go on, and the next look tries again
                log.exception("the results hub could not look at the ledger")
            if loop.time() >= next_ping:
                next_ping = loop.time() + self.keepalive
                for channel in list(self.channels.values()):
                    channel.pings += 1
                    await channel.wake()

    async def _look(self) -> None:
        """Fold in other processes' appends once, then publish each watched poll that changed."""
        ledger = self._ready()
        if not ledger.fresh(FRESHNESS):
            await ledger.refresh_or_stay(FRESHNESS)
        state, now, moment = ledger.state, ledger.clock(), asyncio.get_running_loop().time()
        head = state.head_seq
        for channel in list(self.channels.values()):
            poll = state.polls.get(channel.poll_id)
            if poll is None or moment < channel.quiet_until:
                continue
            if channel.update.seq == head and not _crossed(poll, channel.checked_ms, now):
                continue
            channel.checked_ms = now
            signature = _signature(poll, now)
            if signature == channel.signature:
                continue
            channel.signature = signature
            channel.update = self._compute(poll, head, now)
            channel.quiet_until = moment + max(self.interval, channel.streams * self.gap_per_stream)
            await channel.wake()


def _crossed(poll: Poll, since_ms: int, now_ms: int) -> bool:
    """Whether the poll's opening or closing time fell between two looks (no event marks it)."""
    return any(at is not None and since_ms < at <= now_ms for at in (poll.opens_at, poll.closes_at))


def _hidden(state: LedgerState, poll: Poll, head: int, status: str, now_ms: int) -> bytes:
    """The ``hidden`` event: the results route's 403 error, as data, for those it refuses (the
    rule's message is the same for every caller it refuses: an anonymous caller is refused it)."""
    try:
        check_results_visible(state, poll, None, now_ms)
    except ResultsNotOpenError as exc:
        error = from_domain(exc)
        return _event("hidden", None, {"pollId": poll.poll_id, "asOf": head, "status": status, "error": {
            "code": error.code, "message": error.message, "fields": error.fields}})
    return b""


def _last_event_id(request: web.Request) -> int | None:
    """The ``Last-Event-ID`` an EventSource sends back when it reconnects (ignored unless it is a
    ledger position: this service's ids are nothing else)."""
    value = request.headers.get("Last-Event-ID", "").strip()
    return int(value) if value.isascii() and value.isdigit() and len(value) <= 16 else None


def _stream_caller(request: web.Request) -> str | None:
    """The caller's user id: from Authorization, else from ``?token=``; None for anyone."""
    values: dict[str, str] = {}
    for key, value in request.query.items():
        if key in values:
            raise ApiError(400, "invalid_query", f"{key} is given more than once", {key: "repeated"})
        values[key] = value
    token = load(STREAM_QUERY, values).get("token")
    if request.headers.get("Authorization") is None and token:
        return authenticate(request, token).user.user_id
    return caller_id(request)


STREAM_HEADERS = {
    "Content-Type": f"{EVENT_STREAM}; charset=utf-8",
    "Cache-Control": "no-cache, no-transform",
    "X-Accel-Buffering": "no",  # nginx: pass each event on at once
}

routes = web.RouteTableDef()


@routes.get("/api/v1/polls/{pollId}/results/stream")
async def results_stream(request: web.Request) -> web.StreamResponse:
    """The poll's results now, then on every change, as Server-Sent Events."""
    ledger = request.app[LEDGER]
    hub = request.app[STREAMS]
    user_id = _stream_caller(request)
    poll = get_poll(ledger.state, request.match_info["pollId"])
    sent = _last_event_id(request)  # the position of the results the client holds; None: none
    channel = hub.join(poll)
    response = web.StreamResponse(headers=STREAM_HEADERS)
    response.headers.update(request.get(CORS_HEADERS, {}))
    try:
        await response.prepare(request)
        await response.write(b"retry: %d\n\n" % RETRY_MS)
        pings = channel.pings
        hidden = False
        while not channel.closed:
            update, ping = channel.update, channel.pings
            state = ledger.state
            poll = state.polls[poll.poll_id]
            if not results_visible(state, poll, user_id, ledger.clock()):
                if not hidden:
                    await response.write(update.hidden)
                    hidden, sent = True, None
            elif hidden or sent is None or not update.seq <= sent <= state.head_seq:
                # the client holds no results, or results from before the last change
                await response.write(update.results)
                hidden, sent = False, update.seq
            if ping != pings:
                await response.write(KEEPALIVE_COMMENT)
                pings = ping
            if channel.update is update and channel.pings == pings and not channel.closed:
                await channel.wait()
    except ConnectionError:
        pass  # the client went away: nobody to answer
    finally:
        hub.leave(channel)
    return response


STREAMS = web.AppKey("streams", ResultsHub)
