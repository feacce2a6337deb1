"""Keyboards that depend only on the language and a few plain arguments, built once and then shared.

aiogram's types are frozen pydantic models, so one `InlineKeyboardMarkup` can be sent to any number of chats.
Building one through `InlineKeyboardBuilder` deep-copies a model per button (about 2.4 ms for the 16-coin
keyboard, bench/README.md); serving it from here costs a dict look-up.
"""
from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Concatenate, ParamSpec, TypeVar

from handlers.i18n import Translator

P = ParamSpec("P")
K = TypeVar("K")

# Different argument combinations kept per keyboard; beyond it the cache starts again (it only costs a rebuild).
MAX_KEPT = 1024


def _frozen(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return tuple(_frozen(item) for item in value)
    return value


def per_locale(build: Callable[Concatenate[Translator, P], K]) -> Callable[Concatenate[Translator, P], K]:
    """Cache `build(t, ...)` by the translator's locale and the other arguments (lists read as tuples).

    Only for keyboards whose every input is in the arguments: nothing per user, per deposit or per clock."""
    kept: dict[tuple[Any, ...], K] = {}

    @functools.wraps(build)
    def cached(t: Translator, *args: P.args, **kwargs: P.kwargs) -> K:
        key = (t.locale, _frozen(args), tuple(sorted((name, _frozen(v)) for name, v in kwargs.items())))
        try:
            return kept[key]
        except KeyError:
            pass
        except TypeError:  # an argument that can't be a key: build it every time
            return build(t, *args, **kwargs)
        if len(kept) >= MAX_KEPT:
            kept.clear()
        kept[key] = markup = build(t, *args, **kwargs)
        return markup

    return cached
