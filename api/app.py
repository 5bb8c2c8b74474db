"""The app factory: ``create_app(settings)`` wires the ledger, auth, routes, CORS and middlewares."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from aiohttp import web

from api import docs, legacy, page, proofs, stream, v1
from api.auth import Authenticator, load_or_create_secret
from api.cors import cors_middleware
from api.keys import AUTH, LEDGER, RESPONSES, SETTINGS, SIGNUPS, THROTTLE
from api.middlewares import Handler, error_middleware
from api.responses import ResponseCache
from api.settings import PREFIX, Settings, SettingsError
from api.signing import load_signing
from api.throttle import LoginThrottle, SignupThrottle
from ledger.open import locate, open_store
from projections.commands import Appended, SyncPolls
from projections.polls_file import bundled, load_polls_file
from projections.service import FRESHNESS, VoteLedger

log = logging.getLogger("vote_ledger")


class ReadableLedgerError(SettingsError):
    """The ledger's files are open to other users of the machine."""


def refuse_readable_ledger(settings: Settings) -> None:
    """The ledger holds emails, names and password hashes: refuse to write one whose files other
    users of this machine can read, unless the operator has said so. (Files the service creates
    are 0600: see ``ledger.sqlite.store``.)"""
    path = locate(settings.db).path
    if path is None or settings.allow_readable_ledger:
        return
    for file in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        try:
            mode = file.stat().st_mode & 0o777
        except FileNotFoundError:
            continue
        if mode & 0o077:
            raise ReadableLedgerError(
                f"{file} is open to other users (mode {mode:o}): chmod 600 it, or set "
                f"{PREFIX}ALLOW_READABLE_LEDGER=1 (serve: --allow-readable-ledger) to use it as it is"
            )


async def open_store_ledger(settings: Settings, create: bool) -> VoteLedger:
    """The ledger file named by the settings, replayed and with its writer started."""
    refuse_readable_ledger(settings)
    signing = load_signing(settings)
    store = await open_store(settings.db, create=create, busy_timeout_ms=settings.busy_timeout)
    try:
        return await VoteLedger.open(store, signing, max_batch=settings.max_batch)
    except BaseException:
        await store.close()
        raise


async def open_ledger(settings: Settings) -> tuple[VoteLedger, Appended]:
    """Check the polls file, open (or create) the ledger and append what the file adds.

    The polls file is parsed in full first, so a broken file appends nothing.
    """
    polls = load_polls_file(settings.config or bundled("default"))
    ledger = await open_store_ledger(settings, create=True)
    try:
        result = await ledger.execute(SyncPolls(polls))
    except BaseException:
        await ledger.close()
        raise
    assert isinstance(result, Appended)
    return ledger, result


async def _resources(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    app[AUTH] = Authenticator(settings, load_or_create_secret(settings))
    app[THROTTLE] = LoginThrottle(settings)
    app[SIGNUPS] = SignupThrottle(settings)
    try:
        app[LEDGER], loaded = await open_ledger(settings)
    except BaseException:
        app[AUTH].close()
        raise
    for note in loaded.notes:
        log.warning("polls file: %s", note)
    yield
    await app[LEDGER].close()
    app[AUTH].close()


@web.middleware
async def fresh_reads(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Catch up with other writers before answering: no answer is staler than ``FRESHNESS`` (1 ms)."""
    ledger = request.app.get(LEDGER)
    if ledger is not None and not ledger.fresh(FRESHNESS):  # most requests: no coroutine to make
        await ledger.refresh_or_stay(FRESHNESS)
    return await handler(request)


def create_app(settings: Settings) -> web.Application:
    """The service, ready for ``web.run_app`` or a test client. Nothing runs until it starts."""
    app = web.Application(
        middlewares=[cors_middleware(settings.cors_origins), error_middleware, fresh_reads],
        client_max_size=settings.max_body,
    )
    app[SETTINGS] = settings
    app[RESPONSES] = ResponseCache()
    app[stream.STREAMS] = hub = stream.ResultsHub()
    app.cleanup_ctx.append(_resources)
    app.cleanup_ctx.append(hub.running)
    app.on_shutdown.append(hub.close)  # open streams end before the server waits for its handlers
    app.add_routes(legacy.routes)
    app.add_routes(v1.routes)
    app.add_routes(proofs.routes)
    app.add_routes(stream.routes)
    app.add_routes(docs.routes)
    app.add_routes(page.routes)
    return app
