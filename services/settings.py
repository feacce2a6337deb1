"""Reading settings from the environment: the error every mistake becomes, and the readers core and gateway settings
share, so each message names the variable, what is wrong and how to fix it, in one line."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from urllib.parse import urlparse

from services.money import AmountError, parse_usd
from services.webhooks import IPNetwork, parse_networks


class ConfigError(Exception):
    """One line naming the variable, what is wrong with it, and how to fix it."""


@dataclass(frozen=True)
class Secret:
    """A credential that prints as *** so it can't leak through logs, reprs or tracebacks."""

    value: str = field(repr=False)

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__


@dataclass(frozen=True)
class GatewaySettings:
    """Base of each gateway's own settings: a frozen dataclass in the gateway's module, read by its spec."""

    def secrets(self) -> list[str]:
        """Its credentials' values, to be masked in every log record (services/redact.py)."""
        return [value.value for value in (getattr(self, f.name) for f in fields(self)) if isinstance(value, Secret)]


class Env:
    """The environment as settings read it: values stripped of blanks, mistakes raised as ConfigError."""

    def __init__(self, values: Mapping[str, str]) -> None:
        self._values = values

    def get(self, name: str, default: str = "") -> str:
        return self._values.get(name, default).strip()

    def required(self, name: str, *, gateway: str, hint: str) -> str:
        """A value the chosen gateway can't work without; `hint` says where to find it."""
        value = self.get(name)
        if not value:
            raise ConfigError(f"{name} is required when PAYMENT_GATEWAY={gateway}: {hint}")
        return value

    def bool(self, name: str, default: bool = False) -> bool:
        return parse_bool(self.get(name, "true" if default else "false"), name)

    def http_url(self, name: str, default: str) -> str:
        return parse_http_url(self.get(name, default), name)

    def networks(self, name: str) -> frozenset[IPNetwork]:
        return parse_ip_networks(self.get(name), name)


def parse_bool(text: str, name: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"{name}={text!r} is not true or false")


def parse_ip_networks(text: str, name: str) -> frozenset[IPNetwork]:
    try:
        return parse_networks(text)
    except ValueError as exc:
        raise ConfigError(f"{name}: {exc}; write addresses or networks like 91.227.144.54, 10.0.0.0/8") from None


def parse_usd_setting(text: str, name: str) -> int:
    try:
        return parse_usd(text)
    except AmountError:
        raise ConfigError(f"{name}={text!r} is not a positive USD amount; write it like 5 or 12.50") from None


def parse_int(text: str, name: str, *, hint: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"{name}={text!r} is not a whole number: {hint}") from None


def parse_http_url(text: str, name: str) -> str:
    parsed = urlparse(text)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ConfigError(f"{name}={text!r} is not an http(s) URL, e.g. https://example.com")
    return text.rstrip("/")
