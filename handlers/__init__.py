"""Routers, wired in one place. Order matters only for the fallback, which must come last."""
from __future__ import annotations

from aiogram import Router

from handlers.user import balance, deposit, fallback, history, language, start, topup


def build_routers() -> list[Router]:
    return [
        start.router,
        topup.router,
        deposit.router,
        balance.router,
        history.router,
        language.router,
        fallback.router,  # last: answers whatever nobody else took (stale buttons, stray text)
    ]
