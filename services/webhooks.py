"""Gateway callbacks: recorded raw, checked (source, token, signature), then settled like any other report.

Answers are chosen so a gateway retries only what can succeed later: 2xx once the update is durably
processed (or is nothing of ours), 4xx for what will never be valid, 503 when we or the gateway's API
failed and a retry may help. Nothing a caller sends produces a 500.
"""
from __future__ import annotations

import hmac
import ipaddress
import logging
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from services.alerts import ALERT_WINDOW_SECONDS
from services.gateways.base import Gateway, GatewayError, PaymentUpdate, WebhookReading, WebhookVerdict
from services.gateways.capabilities import Capabilities
from services.settlement import Outcome, Settlement, Settler
from services.store import Database, now_ts
from services.store.db import Conn, retry_on_deadlock
from services import notifications
from services.notifications import AdminWebhookRejected
from services.store import callbacks, deposits

log = logging.getLogger(__name__)

HEADERS_KEPT = ("content-type", "content-length", "user-agent", "x-forwarded-for", "x-real-ip", "sign")

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(text: str) -> frozenset[IPNetwork]:
    """`1.2.3.4, 10.0.0.0/8` → networks; raises ValueError naming the bad entry."""
    networks = set()
    for item in (part.strip() for part in text.split(",")):
        if item:
            try:
                networks.add(ipaddress.ip_network(item, strict=False))
            except ValueError:
                raise ValueError(f"{item!r} is not an IP address or network") from None
    return frozenset(networks)


def client_address(peer: str | None, forwarded_for: str | None, trusted_proxies: Iterable[IPNetwork]) -> str | None:
    """The caller's address: the peer, unless the peer is our own proxy, then the nearest untrusted hop it names."""
    trusted = tuple(trusted_proxies)
    if peer is None or not in_networks(peer, trusted) or not forwarded_for:
        return peer
    for hop in reversed([h.strip() for h in forwarded_for.split(",") if h.strip()]):
        if not in_networks(hop, trusted):
            return hop
    return peer


def in_networks(address: str | None, networks: Iterable[IPNetwork]) -> bool:
    if address is None:
        return False
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in networks)


@dataclass(frozen=True)
class CallbackPolicy:
    """Per-endpoint checks beyond the signature: a source allow-list and a secret token in the URL."""

    allowed_sources: frozenset[IPNetwork] | None = None
    token: str | None = None


@dataclass(frozen=True)
class CallbackAnswer:
    status: int
    body: dict[str, Any] = field(default_factory=dict)


class CallbackInbox:
    def __init__(self, db: Database, gateway: Gateway, settler: Settler, *, admin_chat_id: int | None,
                 trusted_proxies: frozenset[IPNetwork] = frozenset(),
                 policies: Mapping[str, CallbackPolicy] | None = None,
                 capabilities: Capabilities | None = None) -> None:
        self._db = db
        self._capabilities = capabilities if capabilities is not None else Capabilities.of(gateway)
        self._gateway = gateway
        self._settler = settler
        self._admin_chat_id = admin_chat_id
        self._trusted_proxies = trusted_proxies
        self._policies = dict(policies or {})
        self._refusals = RefusalRecord(db, admin_chat_id=admin_chat_id)

    @property
    def refusals(self) -> RefusalRecord:
        return self._refusals

    async def receive(self, source: str, body: bytes, *, headers: Mapping[str, str], peer: str | None,
                      token: str | None = None) -> CallbackAnswer:
        client_ip = client_address(peer, headers.get("x-forwarded-for"), self._trusted_proxies)
        refused = self._screen(source, body, client_ip, token)
        if not isinstance(refused, WebhookReading):
            # Nothing a stranger sends is stored before it is known to be worth storing: a refusal only counts.
            answer, verdict, detail = refused
            await self._refusals.note(source, verdict, client_ip, body, detail)
            return answer
        kept = {name: headers[name] for name in HEADERS_KEPT if name in headers}

        async def record(tx: Conn) -> int:
            return await callbacks.record(tx, source=source, peer=peer, client_ip=client_ip, headers=kept, body=body)

        callback_id: int | None = None
        refetched = refused.order_id if refused.verdict is WebhookVerdict.REFETCH else None
        outcome: PaymentUpdate | tuple[CallbackAnswer, str, str]
        if refused.verdict is WebhookVerdict.REFETCH:
            # Stored before a gateway call is spent on it; settled and judged in a second transaction.
            callback_id = await self._db.run(record)
            outcome = await self._refetch(refused)
        elif refused.verdict is WebhookVerdict.IGNORED:
            outcome = CallbackAnswer(200, {"ok": True}), "ignored", refused.detail
        else:
            assert refused.update is not None
            outcome = refused.update

        async def settle_and_judge(tx: Conn) -> tuple[int, CallbackAnswer, str, str, Settlement | None]:
            """One transaction per callback: the raw record, the settlement and the verdict commit together."""
            result = None
            if isinstance(outcome, PaymentUpdate):
                result = await self._settler.settle_in(tx, outcome)
                verdict = "unknown_order" if result.outcome is Outcome.UNKNOWN_ORDER else result.outcome.value
                answer, detail = CallbackAnswer(200, {"ok": True}), outcome.raw_status or ""
            else:
                answer, verdict, detail = outcome
            judged_order = outcome.order_id if isinstance(outcome, PaymentUpdate) else refetched
            if callback_id is None:  # recorded already judged, in the same transaction as its settlement
                recorded = await callbacks.record(tx, source=source, peer=peer, client_ip=client_ip, headers=kept,
                                                  body=body, verdict=verdict, http_status=answer.status,
                                                  detail=detail, order_id=judged_order)
            else:
                recorded = callback_id
                await callbacks.judge(tx, recorded, verdict=verdict, http_status=answer.status, detail=detail,
                                      order_id=judged_order)
            return recorded, answer, verdict, detail, result

        try:
            callback_id, answer, verdict, detail, result = await retry_on_deadlock(self._db.run)(settle_and_judge)
        except Exception:
            if callback_id is None:  # the raw body is kept all the same (no verdict: it was never judged)
                try:
                    await self._db.run(record)
                except Exception:  # noqa: BLE001 - the first error is the one worth raising
                    log.exception("callback on %s from %s could not be recorded either", source, client_ip)
            raise
        if result is not None and isinstance(outcome, PaymentUpdate):
            self._settler.settled(outcome, result)
        if answer.status >= 400:
            log.warning("callback %s from %s on %s not settled (%s): %s", callback_id, client_ip, source, verdict,
                        detail)
        return answer

    def _screen(self, source: str, body: bytes, client_ip: str | None,
                token: str | None) -> tuple[CallbackAnswer, str, str] | WebhookReading:
        """The checks that need no storage: endpoint, token, source address, then body and signature (pure)."""
        webhook = self._capabilities.webhook
        if source != self._gateway.name or webhook is None:
            return CallbackAnswer(404, {"error": "not found"}), "inactive", f"gateway {source} is not active"
        policy = self._policies.get(source, CallbackPolicy())
        if policy.token is not None and not hmac.compare_digest((token or "").encode(), policy.token.encode()):
            return CallbackAnswer(403, {"error": "forbidden"}), "bad_token", "missing or wrong token"
        if policy.allowed_sources is not None and not in_networks(client_ip, policy.allowed_sources):
            return CallbackAnswer(403, {"error": "forbidden"}), "forbidden_source", f"source {client_ip}"
        reading = webhook.read_webhook(body)
        if reading.verdict is WebhookVerdict.BAD_REQUEST:
            return CallbackAnswer(400, {"error": reading.detail}), "bad_request", reading.detail
        if reading.verdict is WebhookVerdict.BAD_SIGNATURE:
            return CallbackAnswer(401, {"error": "bad signature"}), "bad_signature", reading.detail
        return reading

    async def _refetch(self, reading: WebhookReading) -> PaymentUpdate | tuple[CallbackAnswer, str, str]:
        """A callback that only names an order: ask the gateway's API what it says, if the order is ours."""
        order_id = reading.order_id
        assert order_id is not None
        if await deposits.by_order(self._db.reader, self._gateway.name, order_id) is None:
            # Not ours: don't let strangers make us call the gateway's API.
            return CallbackAnswer(200, {"ok": True}), "unknown_order", ""
        try:
            update = await self._gateway.fetch_payment(order_id)
        except GatewayError as exc:
            return CallbackAnswer(503, {"error": "try again later"}), "refetch_failed", exc.operator_detail
        return replace(update, source="webhook")



REFUSAL_WRITE_SECONDS = 10   # at most one write per endpoint and reason this often, however many refusals arrive
REFUSAL_SAMPLES = 5          # the last few refused bodies kept, each cut to REFUSAL_SAMPLE_BYTES
REFUSAL_SAMPLE_BYTES = 1024
_ALERTED = ("bad_signature", "forbidden_source", "bad_token")


@dataclass
class _Tally:
    unsaved: int = 0
    total: int = 0
    last_written: float = float("-inf")
    samples: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=REFUSAL_SAMPLES))


class RefusalRecord:
    """Refused callbacks, bounded and rate-limited: a count per endpoint and reason, and the last few bodies.

    Counted in memory and written at most every REFUSAL_WRITE_SECONDS per (endpoint, reason) as one row that is
    updated in place, so a flood of anonymous POSTs costs a few row updates, not a row (and a body) each.
    """

    def __init__(self, db: Database, *, admin_chat_id: int | None) -> None:
        self._db = db
        self._admin_chat_id = admin_chat_id
        self._tallies: dict[tuple[str, str], _Tally] = {}
        self._logged: dict[tuple[str, str], float] = {}

    def counts(self) -> dict[tuple[str, str], int]:
        """Refusals seen by this process, per (endpoint, reason), written or not."""
        return {key: tally.total for key, tally in self._tallies.items()}

    async def note(self, source: str, reason: str, client_ip: str | None, body: bytes, detail: str) -> None:
        tally = self._tallies.setdefault((source, reason), _Tally())
        tally.unsaved += 1
        tally.total += 1
        tally.samples.append({"at": now_ts(), "ip": client_ip or "?", "detail": detail[:200],
                              "body": body[:REFUSAL_SAMPLE_BYTES].decode("utf-8", "replace")})
        now = time.monotonic()
        if now - tally.last_written < REFUSAL_WRITE_SECONDS:
            return
        tally.last_written = now
        count, tally.unsaved = tally.unsaved, 0
        log.warning("callbacks refused on %s (%s): %s since the last note, from %s: %s", source, reason, count,
                    client_ip, detail)
        async with self._db.transaction() as tx:
            await callbacks.note_refusals(tx, source=source, reason=reason, count=count, client_ip=client_ip,
                                          samples=list(tally.samples))
            if reason in _ALERTED and self._admin_chat_id is not None:
                window = now_ts() // ALERT_WINDOW_SECONDS
                await notifications.queue(tx, AdminWebhookRejected(source, reason, client_ip or "?"),
                                          chat_id=self._admin_chat_id,
                                          dedupe_key=f"webhook-rejected:{source}:{reason}:{window}")
