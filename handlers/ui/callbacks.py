"""Callback data factories with short explicit prefixes.

Handlers re-validate every field: a client can send any bytes.
"""
from __future__ import annotations

from enum import Enum

from aiogram.filters.callback_data import CallbackData


class MenuAction(str, Enum):
    HOME = "home"
    TOPUP = "topup"
    BALANCE = "balance"
    HISTORY = "history"
    LANGUAGE = "language"
    HELP = "help"


class MenuCb(CallbackData, prefix="m"):
    action: MenuAction
    below: bool = False  # answer under the message (a receipt, a card) instead of replacing it


class CoinCb(CallbackData, prefix="tc"):
    coin: str


class LinkCb(CallbackData, prefix="tl"):
    """A payment page instead of a coin (SMSOnline's extras): method is 'page' or 'card'."""

    method: str


class NetworkCb(CallbackData, prefix="tn"):
    coin: str
    network: str


class AmountCb(CallbackData, prefix="ta"):
    cents: int


class FlowAction(str, Enum):
    BACK = "back"
    ADD_COUPON = "coupon"  # optional, from the confirmation
    CREATE = "create"
    CANCEL = "cancel"


class FlowCb(CallbackData, prefix="tf"):
    action: FlowAction


class DepositAction(str, Enum):
    CHECK = "check"
    CANCEL = "cancel"
    SIMULATE = "sim"
    SHOW = "show"  # send the card again (from History), e.g. if the first one was lost


class DepositCb(CallbackData, prefix="d"):
    action: DepositAction
    deposit_id: int


class HistoryCb(CallbackData, prefix="h"):
    page: int


class LanguageCb(CallbackData, prefix="l"):
    code: str
