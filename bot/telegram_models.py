"""Keep aiogram's Bot API answer models alive for the life of the process.

aiogram parses every Bot API answer as `Response[<the method's return type>]`, a pydantic generic. pydantic caches
the class it builds for each parameter in a `WeakValueDictionary`, so once no answer holds one, the garbage
collector may drop it and the next call builds it again: schema, validator and serializer, 3-5 ms each. With a
conversation's 2 calls an update, that was 13 % of the bot's CPU under load (bench/README.md, issue 13). Holding one
strong reference per return type (41 of them, 40 ms and under 2 MiB once at start-up) makes every later call a
cache hit.
"""
from __future__ import annotations

from typing import Any

from aiogram import methods
from aiogram.methods import Response, TelegramMethod

_pinned: dict[Any, type] = {}


def pin_response_models() -> int:
    """Build `Response[T]` once for every Bot API method's return type and keep it; returns how many are pinned."""
    for name in methods.__all__:
        method = getattr(methods, name)
        if isinstance(method, type) and issubclass(method, TelegramMethod) and method is not TelegramMethod:
            returning = getattr(method, "__returning__", None)
            if returning is not None and returning not in _pinned:
                _pinned[returning] = Response[returning]  # type: ignore[valid-type]  # a type held in a variable
    return len(_pinned)
