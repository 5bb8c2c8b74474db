"""Typed application state keys."""

from __future__ import annotations

from aiohttp import web

from api.auth import Authenticator
from api.responses import ResponseCache
from api.settings import Settings
from api.throttle import LoginThrottle, SignupThrottle
from projections.service import VoteLedger

SETTINGS = web.AppKey("settings", Settings)
LEDGER = web.AppKey("ledger", VoteLedger)
AUTH = web.AppKey("auth", Authenticator)
THROTTLE = web.AppKey("throttle", LoginThrottle)
SIGNUPS = web.AppKey("signups", SignupThrottle)
RESPONSES = web.AppKey("responses", ResponseCache)
