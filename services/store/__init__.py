"""The SQLite store: connection handling, migrations, and one repository module per table group."""
from services.store.db import Database, now_ts
from services.store.models import (
    Coupon,
    CouponKind,
    Deposit,
    DepositStatus,
    LedgerEntry,
    LedgerKind,
    Notification,
    User,
)

__all__ = [
    "Coupon",
    "CouponKind",
    "Database",
    "Deposit",
    "DepositStatus",
    "LedgerEntry",
    "LedgerKind",
    "Notification",
    "User",
    "now_ts",
]
