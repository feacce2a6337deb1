"""The HTTP exchange every gateway client shares: one session, raw answers logged, transport failures mapped."""
from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import Any

import aiohttp

from services.gateways.base import GatewayUnavailable


@dataclass(frozen=True)
class HttpAnswer:
    status: int
    text: str
    json: Any  # the parsed body, or None when it isn't JSON


class GatewayHttp:
    """Raw bodies are logged for audit: answers never carry our keys (they only travel in requests)."""

    def __init__(self, label: str, *, timeout_seconds: float) -> None:
        self._label = label  # as operators read it in messages: "SMSOnline", "Cryptomus"...
        self._name = label.lower().replace(" ", "")  # as it appears in logs: "smsonline", "smartcloudpay"
        self._log = logging.getLogger(f"services.gateways.{self._name}")
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._session: aiohttp.ClientSession | None = None

    async def request(self, method: str, url: str, *, what: str, **kwargs: Any) -> HttpAnswer:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        try:
            async with self._session.request(method, url, **kwargs) as response:
                text = await response.text(errors="replace")
                status = response.status
        except asyncio.TimeoutError as exc:
            raise GatewayUnavailable(f"{self._label} {what}: timed out") from exc
        except aiohttp.ClientError as exc:
            raise GatewayUnavailable(f"{self._label} {what}: {type(exc).__name__}") from exc
        self._log.info("%s %s answered %s: %s", self._name, what, status, text[:2000])
        try:
            parsed = json.loads(text) if text else None
        except ValueError:
            parsed = None
        return HttpAnswer(status, text, parsed)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
