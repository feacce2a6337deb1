"""Routers, wired in one place. Each call builds fresh routers, so several dispatchers can live in one process.

Order: the customers' routers first (nearly every update is a customer's, in a private chat the admin routers would
only check and pass on), then the admin chat's, then the fallback, which answers whatever nobody else took and so
must come last. Nothing is taken from the admin routers by going first: every customer router is private-only and
matches only the customers' own commands and buttons.
"""
from __future__ import annotations

from aiogram import Router

from handlers import admin
from handlers.user import balance, deposit, fallback, history, language, start, topup


def build_routers() -> list[Router]:
    return [
        start.build_router(),
        topup.build_router(),
        deposit.build_router(),
        balance.build_router(),
        history.build_router(),
        language.build_router(),
        admin.build_router(),
        fallback.build_router(),  # last: answers whatever nobody else took (stale buttons, stray text)
    ]
