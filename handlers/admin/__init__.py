"""The admin chat: every router here sits behind IsAdmin; a refusal router answers outsiders in the admin chat.

Feature modules each export build_router(); their commands are listed in ADMIN_COMMANDS for /help and the menu.
"""
from __future__ import annotations

from aiogram import Router

from handlers.admin import core
from handlers.admin.filters import IsAdmin

# (command, feature module) in the order /help shows them; each has admin.command.<name> and an example.
ADMIN_COMMANDS = ("help", "stats", "pending", "deposit", "find", "confirm", "user", "credit", "debit", "coupon_add",
                  "coupons", "coupon_off", "gateway", "payout", "payouts", "export", "audit")


def build_router() -> Router:
    admin = Router(name="admin")
    admin.message.filter(IsAdmin())
    admin.callback_query.filter(IsAdmin())
    admin.include_routers(*[module.build_router() for module in _feature_modules()])
    outer = Router(name="admin-chat")
    outer.include_routers(admin, core.build_refusal_router(ADMIN_COMMANDS))
    return outer


def _feature_modules() -> list:
    import importlib

    modules = [core]
    for name in ("deposits", "users", "coupons", "gateway"):
        try:
            modules.append(importlib.import_module(f"handlers.admin.{name}"))
        except ModuleNotFoundError as exc:
            if exc.name != f"handlers.admin.{name}":
                raise
    return modules
