"""What the fake gateway servers share: an aiohttp app on 127.0.0.1, and plausible-looking deposit addresses."""
from __future__ import annotations

import asyncio
import hashlib
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


class FakeServer:
    """Start, stop and `async with` for a fake: no access log (URLs may carry keys), delays woken on stop."""

    base_path = ""  # appended to base_url, e.g. "/api"
    _runner: web.AppRunner | None = None

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
