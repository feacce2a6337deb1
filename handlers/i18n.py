"""Translations: gettext catalogs in locales/<lang>/LC_MESSAGES/*.po (bot.po, admin.po...), read with Babel.

Message ids are keys (`topup.pick-coin`), never English sentences, so every text lives in locales/.
Values passed in are HTML-escaped: the bot sends HTML and a user's name must not become markup.
"""
from __future__ import annotations

import gettext
import html
import io
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

from services.money import format_usd

LOCALES_DIR = Path(__file__).resolve().parent.parent / "locales"
DOMAIN = "bot"


class Html(str):
    """A value that is already HTML (built from escaped parts) and must not be escaped again."""


class Translator:
    def __init__(self, locale: str, catalog: gettext.NullTranslations) -> None:
        self.locale = locale
        self._catalog = catalog

    def __call__(self, key: str, **values: object) -> str:
        text = self._catalog.gettext(key)
        if not values:
            return text
        safe = {name: value if isinstance(value, Html) else html.escape(str(value), quote=False)
                for name, value in values.items()}
        return text.format(**safe)

    def usd(self, cents: int, *, drop_zero_cents: bool = False) -> str:
        """A USD sum written the way this language writes money (`$1,234.50`, `1 234,50 $`)."""
        return format_usd(cents, self.locale, drop_zero_cents=drop_zero_cents)


def read_catalog(directory: Path) -> gettext.GNUTranslations:
    """Every .po of one language merged into one catalog (a message id must be defined once)."""
    merged = None
    for path in sorted(directory.glob("*.po")):
        with path.open("rb") as po_file:
            catalog = read_po(po_file)
        if merged is None:
            merged = catalog
            continue
        for message in catalog:
            if message.id:
                if message.id in merged:
                    raise ValueError(f"{path}: message {message.id!r} is already defined in another file")
                merged[message.id] = message
    assert merged is not None
    buffer = io.BytesIO()
    write_mo(buffer, merged)
    buffer.seek(0)
    return gettext.GNUTranslations(buffer)


# A Telegram language we don't ship -> a shipped one its speakers commonly read. Belarusian and Kazakh users live
# with Russian as an official language. Ukrainian is left out on purpose: many Ukrainians would rather not be
# addressed in Russian, so they get the default language and can pick Russian in 🌐 Language themselves.
CLOSE_LANGUAGES: dict[str, str] = {"be": "ru", "kk": "ru"}


class Locales:
    """All shipped languages; any missing text falls back to the default language, then to the key."""

    def __init__(self, default: str, directory: Path = LOCALES_DIR, *, admin: str | None = None) -> None:
        self.default = default
        self.admin = admin or default  # the admin chat speaks one language, whoever writes there
        self._catalogs: dict[str, gettext.GNUTranslations] = {}
        for po_path in sorted(directory.glob(f"*/LC_MESSAGES/{DOMAIN}.po")):
            self._catalogs[po_path.parent.parent.name] = read_catalog(po_path.parent)
        if default not in self._catalogs:
            raise ValueError(f"default locale {default!r} has no catalog in {directory}")
        fallback = self._catalogs[default]
        self._translators = {}
        for code, catalog in self._catalogs.items():
            if code != default:
                catalog.add_fallback(fallback)
            self._translators[code] = Translator(code, catalog)

    @property
    def available(self) -> tuple[str, ...]:
        return tuple(self._catalogs)

    def get(self, code: str | None) -> Translator:
        return self._translators.get(code or "", self._translators[self.default])

    def for_admin(self) -> Translator:
        return self.get(self.admin)

    def pick(self, chosen: str | None, telegram_language: str | None) -> str:
        """The user's own choice, else their Telegram language if we ship it (or one its speakers read), else the
        default."""
        spoken = (telegram_language or "").split("-")[0].lower()
        for candidate in (chosen, spoken, CLOSE_LANGUAGES.get(spoken)):
            if candidate and candidate in self._catalogs:
                return candidate
        return self.default


def shipped_locales(directory: Path = LOCALES_DIR) -> tuple[str, ...]:
    return tuple(sorted(p.parent.parent.name for p in directory.glob(f"*/LC_MESSAGES/{DOMAIN}.po")))
