"""Operator alerts for gateway problems a person must fix (wrong key, blocked account), rate-limited."""
from __future__ import annotations

from services.gateways.base import GatewayError
from services.store import now_ts
from services.notifications import AdminGatewayError, queue
from services.store.db import Conn

ALERT_WINDOW_SECONDS = 600  # at most one alert per gateway and kind of error in this window


async def alert_operator(tx: Conn, *, admin_chat_id: int | None, gateway: str,
                         error: GatewayError) -> None:
    if admin_chat_id is None:
        return
    window = now_ts() // ALERT_WINDOW_SECONDS
    await queue(tx, AdminGatewayError(gateway, error.operator_detail), chat_id=admin_chat_id,
                dedupe_key=f"gateway-error:{gateway}:{type(error).__name__}:{window}")
