"""Print a top-up as the customer sees it, captured from the fake Bot API: `python -m tests.transcript [en|ru]`.

The real dispatcher and the sandbox gateway, with a 10% coupon: /start, Top up, USDT, TRON, an amount, the
coupon, Create, Simulate payment. Used for the before/after transcripts in issue notes; it copes with the older
flow (a coupon step with "Skip") too, so the same script shows both.
"""
from __future__ import annotations

import asyncio
import html
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

from services.store import CouponKind
from services.store import coupons as coupon_repo
from tests.fakes.bot_api import FakeBotAPI
from tests.harness import Harness

USER = 555
LABELS = {"en": ("Top up", "Create", "Simulate", "Add coupon", "Skip"),
          "ru": ("Пополнить", "Создать", "Имитировать", "Добавить купон", "Пропустить")}


def _buttons(markup: Any) -> str:
    rows = (markup or {}).get("inline_keyboard", []) if isinstance(markup, dict) else []
    shown = [" ".join(f"[{b['text']}{' ⧉' if 'copy_text' in b else ''}{' ↗' if 'url' in b else ''}]" for b in row)
             for row in rows]
    return "\n".join(f"        {row}" for row in shown)


def _render(call: Any) -> str | None:
    p = call.params
    if p.get("chat_id") not in (None, USER):
        return None  # the admin chat is another story
    if call.method in ("sendMessage", "sendPhoto"):
        kind = "photo (QR)" if call.method == "sendPhoto" else "message"
        body = p.get("text") or p.get("caption") or ""
        out = f"  bot → new {kind} #{(call.result or {}).get('message_id')}:\n" + _indent(body)
    elif call.method in ("editMessageText", "editMessageCaption"):
        out = f"  bot ✎ edits #{p.get('message_id')}:\n" + _indent(p.get("text") or p.get("caption") or "")
    elif call.method == "editMessageReplyMarkup":
        return f"  bot ✎ #{p.get('message_id')}: keyboard {'removed' if not p.get('reply_markup') else 'changed'}"
    elif call.method == "answerCallbackQuery":
        return f"  bot (toast): {p['text']}" if p.get("text") else None
    else:
        return None
    keyboard = _buttons(p.get("reply_markup"))
    return out + ("\n" + keyboard if keyboard else "")


def _indent(text: str) -> str:
    """As Telegram shows it: markup rendered away, no-break spaces as spaces."""
    plain = html.unescape(re.sub(r"<[^>]+>", "", text)).replace("\u00a0", " ")
    return "\n".join(f"      | {line}" for line in plain.splitlines())


async def transcript(lang: str) -> str:
    top_up, create, simulate, add_coupon, skip = LABELS[lang]
    lines: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        async with FakeBotAPI() as api:
            h = await Harness.start(api, Path(tmp) / "bot.sqlite3")
            try:
                async with h.app.db.transaction() as tx:
                    await coupon_repo.create(tx, code="SAVE10", kind=CouponKind.PERCENT, value=10)
                seen = 0

                async def act(label: str, action: Any) -> None:
                    nonlocal seen
                    lines.append(f"USER {label}")
                    await action
                    for call in api.calls[seen:]:
                        rendered = _render(call)
                        if rendered:
                            lines.append(rendered)
                    seen = len(api.calls)

                def has_button(label: str) -> bool:
                    return any(label in b for b in h.buttons(h.last(USER)))

                await act("/start", h.send(USER, "/start", language_code=lang))
                await act(f"taps “{top_up}”", h.tap(USER, top_up, language_code=lang))
                await act("taps “USDT”", h.tap(USER, "USDT", language_code=lang))
                await act("taps “TRON”", h.tap(USER, "TRON", language_code=lang))
                await act("types “12.50”", h.send(USER, "12.50", language_code=lang))
                if has_button(add_coupon):
                    await act(f"taps “{add_coupon}”", h.tap(USER, add_coupon, language_code=lang))
                await act("types “SAVE10”", h.send(USER, "SAVE10", language_code=lang))
                await act(f"taps “{create}”", h.tap(USER, create, language_code=lang))
                await act(f"taps “{simulate}”", h.tap(USER, simulate, language_code=lang))
                await act("(payment confirmed: the bot's notifications go out)", h.deliver())
            finally:
                await h.close()
    return "\n".join(lines)


if __name__ == "__main__":
    for language in sys.argv[1:] or ["en", "ru"]:
        print(f"===== {language} =====")
        print(asyncio.run(transcript(language)))
