"""Every configured secret is replaced by *** in every log record, whoever logs it (our code, aiohttp, aiogram).

Gateway clients register their keys when they are built, the app registers the bot token, webhook secrets and
the Smart CloudPay callback token; from then on no record can carry them, in its message or its traceback. This
is the net under the rule that secrets never reach a log: code should not log them in the first place.
"""
from __future__ import annotations

import logging
import threading
from typing import Any

MIN_SECRET_LENGTH = 6  # shorter values (empty, "1") would redact ordinary text and protect nothing
MASK = "***"

_lock = threading.Lock()
_secrets: frozenset[str] = frozenset()
_installed = False
_base_factory = logging.getLogRecordFactory()


def register_secret(*values: str | None) -> None:
    """Never let these values appear in a log record again (in this process)."""
    global _secrets
    fresh = {v for v in values if v and len(v) >= MIN_SECRET_LENGTH}
    if not fresh - _secrets:
        return
    with _lock:
        # Longest first, so a secret that contains another is masked whole.
        _secrets = frozenset(_secrets | fresh)
        _install()


def redact(text: str) -> str:
    for secret in sorted(_secrets, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def _install() -> None:
    global _installed
    if _installed:
        return
    _installed = True
    logging.setLogRecordFactory(_redacting_factory)


def _redacting_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
    record = _base_factory(*args, **kwargs)
    if not _secrets:
        return record
    try:
        message = record.getMessage()
    except Exception:  # noqa: BLE001 - a bad format string is logging's to report, not ours
        return record
    clean = redact(message)
    if clean != message:
        record.msg, record.args = clean, None
    if record.exc_info and record.exc_info[0] is not None:
        text = logging.Formatter().formatException(record.exc_info)
        record.exc_text = redact(text)
    return record
