"""Admin coupon commands: /coupon_add, /coupons, /coupon_off. Coupons move no money themselves: no second tap."""
from __future__ import annotations

from datetime import datetime, timezone
from html import escape

from aiogram import Router
from aiogram.filters import Command, CommandObject
from aiogram.types import Message

from handlers.i18n import Html, Translator
from handlers.admin.confirm import actor_of
from handlers.admin.users import reply_lines, short
from services.admin import AdminService
from services.coupons import CouponSpec, CouponSpecError, CouponSpecProblem, add_coupon, parse_coupon_spec
from services.gateways.base import AccountCouponsGateway, GatewayError, ProviderCoupon
from services.gateways.capabilities import Capabilities
from services.money import format_usd
from services.store import Coupon, CouponKind, now_ts
from services.store import coupons as coupon_repo


def day(ts: int) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%d")


def bonus_text(kind: CouponKind, value: int) -> str:
    return f"{value}%" if kind is CouponKind.PERCENT else format_usd(value)


def describe(t: Translator, coupon: Coupon, now: int) -> str:
    """One coupon on one line: code, bonus, use, and whatever limits it has."""
    parts = [f"<code>{escape(coupon.code)}</code>",
             t("admin.coupons.d-bonus", bonus=bonus_text(coupon.kind, coupon.value)),
             t("admin.coupons.d-used", used=coupon.used_count,
               max=coupon.max_uses if coupon.max_uses is not None else "∞")]
    if coupon.min_amount_cents:
        parts.append(t("admin.coupons.d-min", min=format_usd(coupon.min_amount_cents)))
    if coupon.expires_at is not None:
        expired = coupon.expires_at <= now
        parts.append(t("admin.coupons.d-expired" if expired else "admin.coupons.d-until", date=day(coupon.expires_at)))
    if not coupon.active:
        parts.append(t("admin.coupons.d-disabled"))
    return " · ".join(parts)


# --- /coupon_add ---

async def coupon_add(message: Message, command: CommandObject, t: Translator, admin: AdminService) -> None:
    try:
        spec = parse_coupon_spec(command.args or "")
    except CouponSpecError as exc:
        await message.reply(spec_problem(t, exc) + "\n\n" + t("admin.coupons.usage"))
        return
    if spec.expires_at is not None and spec.expires_at <= now_ts():
        # Accepted by the parser, but a coupon that is dead on arrival is always a typo.
        await message.reply(t("admin.coupons.date-past", date=day(spec.expires_at)) + "\n\n" + t("admin.coupons.usage"))
        return
    actor = actor_of(message)
    if await add_coupon(admin.db, spec, created_by=actor.id) is None:
        await message.reply(t("admin.coupons.exists", code=spec.code))
        return
    added = await coupon_repo.by_code(admin.db.reader, spec.code)
    assert added is not None
    await admin.record(actor, "coupon_add", f"coupon:{added.code}", audit_details(spec))
    await message.reply(t("admin.coupons.added", coupon=Html(describe(t, added, now_ts()))))


def audit_details(spec: CouponSpec) -> dict[str, object]:
    details: dict[str, object] = {"bonus": bonus_text(spec.kind, spec.value)}
    if spec.max_uses is not None:
        details["max_uses"] = spec.max_uses
    if spec.expires_at is not None:
        details["until"] = day(spec.expires_at)
    if spec.min_amount_cents:
        details["min_amount_cents"] = spec.min_amount_cents
    return details


def spec_problem(t: Translator, exc: CouponSpecError) -> str:
    """What exactly is wrong with the coupon line, naming the word as typed."""
    got = short(exc.detail, 40)
    problem = exc.problem
    if problem is CouponSpecProblem.CODE:
        return t("admin.coupons.bad-code", got=got)
    if problem is CouponSpecProblem.VALUE:
        return t("admin.coupons.bad-value", got=got)
    if problem is CouponSpecProblem.USES:
        return t("admin.coupons.bad-uses", got=got)
    if problem is CouponSpecProblem.DATE:
        return t("admin.coupons.bad-date", got=got)
    if problem is CouponSpecProblem.MIN_AMOUNT:
        return t("admin.coupons.bad-min", got=got)
    if got in ("until", "min"):  # the option's value is missing at the end of the line
        return t("admin.coupons.missing-value", got=got)
    if got:
        return t("admin.coupons.bad-word", got=got)
    return t("admin.coupons.too-short")


# --- /coupons ---

async def coupon_list(message: Message, t: Translator, admin: AdminService, capabilities: Capabilities) -> None:
    """The bot's own coupons, then (on SMSOnline) the account's coupons that SMSOnline itself applies."""
    coupons = await coupon_repo.all_coupons(admin.db.reader)
    now = now_ts()
    lines = ([t("admin.coupons.list-title", count=len(coupons))] + [describe(t, coupon, now) for coupon in coupons]
             if coupons else [t("admin.coupons.empty")])
    if capabilities.account_coupons is not None:
        try:
            provider = await provider_coupons_text(t, capabilities.account_coupons)
        except GatewayError as exc:
            provider = t("admin.gateway.unavailable", what=t("admin.gateway.label-coupons"),
                         reason=exc.operator_detail)
        lines += ["", *provider.split("\n")]
    await reply_lines(message, lines)


async def provider_coupons_text(t: Translator, gateway: AccountCouponsGateway) -> str:
    """SMSOnline's coupons for this account, each as SMSOnline describes it; the bot never applies them itself."""
    coupons = await gateway.account_coupons()
    if not coupons:
        return t("admin.coupons.provider-empty")
    return "\n".join([t("admin.coupons.provider-title", count=len(coupons))]
                     + [provider_coupon_line(t, coupon) for coupon in coupons])


def provider_coupon_line(t: Translator, coupon: ProviderCoupon) -> str:
    unknown = t("admin.gateway.not-reported")
    percentage = f"{coupon.percentage}%" if coupon.percentage and not coupon.percentage.endswith("%") \
        else coupon.percentage
    return t("admin.coupons.provider-item", code=coupon.code, percentage=percentage or unknown,
             target=coupon.target or unknown, expires=coupon.expires or unknown, status=coupon.status or unknown)


# --- /coupon_off ---

async def coupon_off(message: Message, command: CommandObject, t: Translator, admin: AdminService) -> None:
    words = (command.args or "").split()
    if len(words) != 1:
        await message.reply(t("admin.coupons.off-usage"))
        return
    coupon = await coupon_repo.by_code(admin.db.reader, words[0])
    if coupon is None:
        await message.reply(t("admin.coupons.not-found", code=short(words[0], 40)))
        return
    if not coupon.active:
        await message.reply(t("admin.coupons.already-off", code=coupon.code))
        return
    async with admin.db.transaction() as tx:
        await coupon_repo.set_active(tx, coupon.code, False)
    await admin.record(actor_of(message), "coupon_off", f"coupon:{coupon.code}", {"used": coupon.used_count})
    await message.reply(t("admin.coupons.off", code=coupon.code))


def build_router() -> Router:
    router = Router(name="admin-coupons")
    router.message.register(coupon_add, Command("coupon_add"))
    router.message.register(coupon_list, Command("coupons"))
    router.message.register(coupon_off, Command("coupon_off"))
    return router
