"""What the fake gateway servers share: an aiohttp app on 127.0.0.1, and plausible-looking deposit addresses."""
from __future__ import annotations

import asyncio
import hashlib
import json
from dataclasses import dataclass, field
from typing import Self

from aiohttp import web

_EVM_NETWORKS = frozenset({"BSC", "ETH", "POLYGON", "ARBITRUM", "AVALANCHE", "EVM"})
_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B32 = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def fake_address(network: str, seed: str) -> str:
    """A deterministic, plausible-looking (not valid) address for the network, whatever case the gateway uses."""
    net = network.upper()
    digest = hashlib.sha256(f"{net}:{seed}".encode()).digest() * 4

    def pick(alphabet: str, n: int) -> str:
        return "".join(alphabet[b % len(alphabet)] for b in digest[:n])

    if net in _EVM_NETWORKS:
        return "0x" + digest[:20].hex()
    prefixes = {"TRON": ("T", _B58, 33), "BTC": ("bc1q", _B32, 38), "LTC": ("ltc1q", _B32, 38),
                "BCH": ("bitcoincash:q", _B32, 41), "SOL": ("", _B58, 44), "TON": ("UQ", _B64URL, 46),
                "XMR": ("4", _B58, 94), "DASH": ("X", _B58, 33), "DOGE": ("D", _B58, 33)}
    prefix, alphabet, length = prefixes.get(net, ("", _B58, 34))
    return prefix + pick(alphabet, length)


@dataclass
class Fault:
    """A canned answer for the next matching requests (see FakeServer.fail_next)."""

    path_contains: str
    status: int | None
    body: bytes
    content_type: str
    delay: float
    remaining: int
    method: str | None = None
    exact: bool = False
    hits: int = field(default=0)

    def matches(self, request: web.Request) -> bool:
        path_ok = request.path == self.path_contains if self.exact else self.path_contains in request.path
        return path_ok and (self.method is None or self.method == request.method)


class FakeServer:
    """Start, stop and `async with` for a fake (no access log: URLs may carry keys), and fault injection.

    Subclasses set `self._faults: list[Fault] = []` and call `_inject_fault` from their middleware.
    """

    base_path = ""  # appended to base_url, e.g. "/api"
    _runner: web.AppRunner | None = None
    _faults: list[Fault]

    def fail_next(self, path_contains: str, *, status: int | None = 502,
                  body: str | bytes | dict | list = "Bad Gateway", content_type: str | None = None, delay: float = 0.0,
                  count: int = 1, method: str | None = None, exact: bool = False) -> None:
        """Answer the next ``count`` requests whose path contains ``path_contains`` with a canned response.

        ``exact=True`` matches the path exactly (e.g. "/v1/payment" is contained in "/v1/payment/info").
        ``body`` may be a dict/list (sent as JSON). ``delay`` seconds are slept first, to simulate a hang (``stop()``
        cuts the sleep short). ``status=None``: after the delay, let the real handler answer (slow but correct).
        ``method`` restricts the match to one HTTP method. Faults are consumed in the order added.
        """
        if isinstance(body, (dict, list)):
            raw = json.dumps(body).encode()
            content_type = content_type or "application/json"
        else:
            raw = body.encode() if isinstance(body, str) else bytes(body)
        self._faults.append(Fault(path_contains, status, raw, content_type or "text/plain", delay, count,
                                  method.upper() if method else None, exact))

    async def _inject_fault(self, request: web.Request) -> web.Response | None:
        """The canned answer for this request after its delay, or None to let the real handler answer."""
        fault = next((f for f in self._faults if f.matches(request)), None)
        if fault is None:
            return None
        fault.remaining -= 1
        fault.hits += 1
        if fault.remaining <= 0:
            self._faults.remove(fault)
        if fault.delay > 0:
            try:
                await asyncio.wait_for(self._closing.wait(), timeout=fault.delay)
            except TimeoutError:
                pass
        if fault.status is None:
            return None
        return web.Response(status=fault.status, body=fault.body, headers={"Content-Type": fault.content_type})

    def make_app(self) -> web.Application:
        raise NotImplementedError

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Start listening; sets and returns ``base_url``."""
        if self._runner is not None:
            raise RuntimeError(f"{type(self).__name__} already started")
        self._closing = asyncio.Event()
        runner = web.AppRunner(self.make_app(), access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        await web.TCPSite(runner, host, port).start()
        self._runner = runner
        self.base_url = f"http://{host}:{runner.addresses[0][1]}{self.base_path}"
        return self.base_url

    async def stop(self) -> None:
        self._closing.set()  # wakes any fault-injected delays so shutdown does not wait for them
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
