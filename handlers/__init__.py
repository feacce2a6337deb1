"""Routers, wired in one place. Each call builds fresh routers, so several dispatchers can live in one process.

Order matters only for the fallback, which must come last.
"""
from __future__ import annotations

from aiogram import Router

from handlers.user import balance, deposit, fallback, history, language, start, topup


def build_routers() -> list[Router]:
    return [
        start.build_router(),
        topup.build_router(),
        deposit.build_router(),
        balance.build_router(),
        history.build_router(),
        language.build_router(),
        fallback.build_router(),  # last: answers whatever nobody else took (stale buttons, stray text)
    ]
