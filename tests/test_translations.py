"""Every message the code asks for exists in every shipped language.

Same placeholders everywhere, and every text is valid Telegram HTML.
"""
from __future__ import annotations

import ast
import string
from pathlib import Path

import pytest
from aiogram import Bot
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.enums import ParseMode
from aiogram.exceptions import TelegramBadRequest
from babel.messages.pofile import read_po

from bot.app import USER_COMMANDS
from handlers.ui.callbacks import DepositAction, FlowAction
from handlers.admin import ADMIN_COMMANDS
from services.links import LinkRefused
from services.admin import AdminProblem
from services.coupons import CouponProblem
from services.matrix import LINK_METHODS
from services.money import AmountProblem
from services.store import DepositStatus
from services.topup import TopupProblem
from tests.fakes.bot_api import FakeBotAPI

ROOT = Path(__file__).resolve().parent.parent
LOCALES = sorted(p.parent.parent.name for p in (ROOT / "locales").glob("*/LC_MESSAGES/bot.po"))
OTHER_LOCALES = [code for code in LOCALES if code != "en"]

# Keys the code builds with an f-string: the prefix, and every value that can follow it.
DYNAMIC_KEYS: dict[str, list[str]] = {
    "amount.error.": [p.value for p in AmountProblem],
    "coupon.error.": [p.value for p in CouponProblem],
    "deposit.status.": [s.value for s in DepositStatus],
    "deposit.check.": [s.value for s in DepositStatus],
    "flow.": [a.value for a in FlowAction],
    "deposit.": [a.value for a in DepositAction],
    "command.": list(USER_COMMANDS),
    "topup.link.": list(LINK_METHODS),
    "admin.command.": list(ADMIN_COMMANDS),
    "admin.error.": [p.value for p in AdminProblem],
    "deposit.link-note.": list(LINK_METHODS),
    "link.": [r.value for r in LinkRefused],
    "topup.error.": [p.value for p in (TopupProblem.TOO_MANY_OPEN, TopupProblem.TOO_MANY_RECENT)],
}


def catalog(code: str) -> dict[str, str]:
    texts: dict[str, str] = {}
    for path in sorted((ROOT / "locales" / code / "LC_MESSAGES").glob("*.po")):  # bot.po, admin.po, ...
        with path.open("rb") as po_file:
            texts.update({str(m.id): str(m.string) for m in read_po(po_file) if m.id})
    return texts


def placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}


def _is_translation_call(node: ast.Call) -> bool:
    """`t("key", ...)`, or `locales.get(code)("key")`: a translator called with the key first."""
    return bool(node.args) and (isinstance(node.func, ast.Name) and node.func.id == "t"
                                or isinstance(node.func, ast.Call))


def keys_in_sources() -> tuple[set[str], set[str]]:
    """(literal keys, f-string key prefixes) passed to translators in handlers/ and bot/."""
    literal: set[str] = set()
    prefixes: set[str] = set()
    for path in sorted([*(ROOT / "handlers").rglob("*.py"), *(ROOT / "bot").rglob("*.py")]):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        assigned: dict[str, list[ast.expr]] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    if isinstance(target, ast.Name):
                        assigned.setdefault(target.id, []).append(node.value)
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and _is_translation_call(node)):
                continue
            first = node.args[0]
            sources = assigned.get(first.id, []) if isinstance(first, ast.Name) else [first]  # t(key, ...)
            for part in (leaf for source in sources for leaf in _key_leaves(source)):
                if isinstance(part, ast.JoinedStr):
                    head = part.values[0]
                    assert isinstance(head, ast.Constant), f"{path.name}: f-string key without a prefix"
                    prefixes.add(str(head.value))
                elif isinstance(part, ast.Constant) and isinstance(part.value, str):
                    literal.add(part.value)
    return literal, prefixes


def _key_leaves(expr: ast.expr) -> list[ast.expr]:
    """The strings an expression can evaluate to: itself, or both branches of `a if cond else b`."""
    if isinstance(expr, ast.IfExp):
        return _key_leaves(expr.body) + _key_leaves(expr.orelse)
    return [expr]


CATALOGS = {code: catalog(code) for code in LOCALES}
LITERAL_KEYS, FSTRING_PREFIXES = keys_in_sources()


def test_english_and_russian_are_shipped() -> None:
    assert {"en", "ru"} <= set(LOCALES)


def test_every_locale_has_the_same_keys() -> None:
    english = set(CATALOGS["en"])
    assert len(english) > 50
    for code in OTHER_LOCALES:
        assert set(CATALOGS[code]) == english, (
            f"{code}: missing {sorted(english - set(CATALOGS[code]))}, extra {sorted(set(CATALOGS[code]) - english)}")


@pytest.mark.parametrize("code", LOCALES)
def test_every_text_is_translated(code: str) -> None:
    empty = [key for key, text in CATALOGS[code].items() if not text.strip()]
    assert empty == []


@pytest.mark.parametrize("code", OTHER_LOCALES)
def test_placeholders_match_english(code: str) -> None:
    mismatched = {key: (placeholders(en_text), placeholders(CATALOGS[code][key]))
                  for key, en_text in CATALOGS["en"].items()
                  if placeholders(en_text) != placeholders(CATALOGS[code][key])}
    assert mismatched == {}


@pytest.mark.parametrize("code", OTHER_LOCALES)
def test_translations_are_not_copies_of_english(code: str) -> None:
    same = [key for key, text in CATALOGS["en"].items() if CATALOGS[code][key] == text]
    assert len(same) <= len(CATALOGS["en"]) // 20, f"{code} repeats English for {same}"


def test_source_scan_finds_the_keys() -> None:
    """Guards the scan itself: if it stopped finding keys, the next tests would pass on nothing."""
    assert {"stale", "start.greeting", "admin.paid", "admin.paid-review", "language.name",
            "flow.nothing-to-cancel"} <= LITERAL_KEYS
    assert len(LITERAL_KEYS) > 50


@pytest.mark.parametrize("code", LOCALES)
def test_every_literal_key_in_code_exists(code: str) -> None:
    assert sorted(LITERAL_KEYS - set(CATALOGS[code])) == []


def test_every_fstring_key_prefix_is_enumerated_here() -> None:
    assert FSTRING_PREFIXES == set(DYNAMIC_KEYS), "a new f-string key: add its enum to DYNAMIC_KEYS"


@pytest.mark.parametrize("code", LOCALES)
def test_every_fstring_key_exists(code: str) -> None:
    built = {prefix + value for prefix, values in DYNAMIC_KEYS.items() for value in values}
    assert sorted(built - set(CATALOGS[code])) == []


@pytest.mark.parametrize("code", LOCALES)
async def test_every_text_is_valid_telegram_html(code: str) -> None:
    async with FakeBotAPI() as api:
        bot = Bot("123456:TEST-token-for-tests", session=AiohttpSession(api=TelegramAPIServer.from_base(api.base_url)),
                  default=DefaultBotProperties(parse_mode=ParseMode.HTML))
        refused: dict[str, str] = {}
        try:
            for key, text in CATALOGS[code].items():
                try:
                    await bot.send_message(1, text.format(**dict.fromkeys(placeholders(text), "X1")))
                except TelegramBadRequest as exc:
                    refused[key] = exc.message
        finally:
            await bot.session.close()
    assert refused == {}
    assert len(api.calls_of("sendMessage")) == len(CATALOGS[code])
