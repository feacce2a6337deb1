"""The coins and networks the bot can offer: one internal vocabulary, narrowed by gateway and operator."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

# The SMSOnline V3 direct-wallet table (shared/reference/payment-apis.md 1.4), in the order users see it.
SUPPORTED_MATRIX: dict[str, tuple[str, ...]] = {
    "USDT": ("TRON", "BSC", "ETH", "POLYGON", "ARBITRUM", "AVALANCHE", "SOL", "TON"),
    "BTC": ("BTC",),
    "LTC": ("LTC",),
    "TRX": ("TRON",),
    "ETH": ("ETH",),
    "XMR": ("XMR",),
    "POL": ("POLYGON", "ETH"),
    "BNB": ("BSC",),
    "USDC": ("BSC", "ETH", "POLYGON", "ARBITRUM", "AVALANCHE"),
    "SOL": ("SOL",),
    "DASH": ("DASH",),
    "DOGE": ("DOGE",),
    "TON": ("TON",),
    "BCH": ("BCH",),
    "AVAX": ("AVALANCHE",),
    "DAI": ("BSC", "POLYGON", "ETH"),
}

# What people type for a coin at the coin step, besides its ticker (English and Russian names, lower case).
COIN_NAMES: dict[str, str] = {
    "tether": "USDT", "тезер": "USDT", "юсдт": "USDT", "bitcoin": "BTC", "биткоин": "BTC", "биткойн": "BTC",
    "litecoin": "LTC", "лайткоин": "LTC", "tron": "TRX", "трон": "TRX", "ethereum": "ETH", "ether": "ETH",
    "эфир": "ETH", "эфириум": "ETH", "monero": "XMR", "монеро": "XMR", "polygon": "POL", "matic": "POL",
    "usd coin": "USDC", "solana": "SOL", "солана": "SOL", "dash": "DASH", "даш": "DASH", "dogecoin": "DOGE",
    "доги": "DOGE", "догикоин": "DOGE", "toncoin": "TON", "тон": "TON", "bitcoin cash": "BCH",
    "avalanche": "AVAX", "dai": "DAI",
}


def coin_from_text(text: str, offered: list[str]) -> str | None:
    """The offered coin a typed word names (`usdt`, `Bitcoin`, `эфир`), or None."""
    word = " ".join(text.strip().lower().split())
    coin = word.upper() if word.upper() in offered else COIN_NAMES.get(word)
    return coin if coin in offered else None


# Ways to pay through a page instead of an address (SMSOnline's extras): method -> the "network" shown.
LINK_METHODS: dict[str, str] = {"page": "PAGE", "card": "CARD"}
LINK_COIN = "USD"

# Coins worth one US dollar, whose amounts and limits read directly as USD.
STABLECOINS = frozenset({"USDT", "USDC", "DAI"})

# Human names for networks, shown on buttons and in the "send only on this network" warning.
NETWORK_TITLES: dict[str, str] = {
    "TRON": "TRON",
    "BSC": "BNB Smart Chain",
    "ETH": "Ethereum",
    "POLYGON": "Polygon",
    "ARBITRUM": "Arbitrum One",
    "AVALANCHE": "Avalanche C-Chain",
    "SOL": "Solana",
    "TON": "TON",
    "BTC": "Bitcoin",
    "LTC": "Litecoin",
    "XMR": "Monero",
    "DASH": "Dash",
    "DOGE": "Dogecoin",
    "BCH": "Bitcoin Cash",
    "PAGE": "Cryptomus payment page",
    "CARD": "Bank card (Pay4bit)",
}


def network_from_code(codes: Mapping[str, str], code: str) -> str | None:
    """Our network for a gateway's code (case-insensitive; `codes` maps ours to theirs); None if we don't offer it."""
    for ours, theirs in codes.items():
        if theirs.lower() == code.lower():
            return ours
    return None


@dataclass(frozen=True, order=True)
class Pair:
    coin: str
    network: str

    def __str__(self) -> str:
        return f"{self.coin}/{self.network}"


def all_pairs() -> list[Pair]:
    return [Pair(coin, net) for coin, nets in SUPPORTED_MATRIX.items() for net in nets]


class ConfigPairError(ValueError):
    pass


def parse_pair_filter(text: str) -> frozenset[Pair] | None:
    """Parse the operator's ALLOWED_PAIRS: `USDT:TRON,USDT:BSC,BTC` (a bare coin means all its networks).

    Empty means no narrowing (None). Unknown coins or networks are an error, so a typo is caught at start-up.
    """
    items = [item.strip().upper() for item in text.split(",") if item.strip()]
    if not items:
        return None
    pairs: set[Pair] = set()
    for item in items:
        coin, _, network = item.partition(":")
        networks = SUPPORTED_MATRIX.get(coin)
        if networks is None:
            raise ConfigPairError(f"unknown coin {coin!r} (known: {', '.join(SUPPORTED_MATRIX)})")
        if network:
            if network not in networks:
                raise ConfigPairError(f"{coin} has no network {network!r} (it has: {', '.join(networks)})")
            pairs.add(Pair(coin, network))
        else:
            pairs.update(Pair(coin, net) for net in networks)
    return frozenset(pairs)


class Matrix:
    """The pairs offered to users: supported matrix ∩ what the gateway takes ∩ what the operator allows."""

    def __init__(self, gateway_pairs: frozenset[Pair], operator_filter: frozenset[Pair] | None = None) -> None:
        self._operator_filter = operator_filter
        self._pairs: list[Pair] = []
        self.replace_gateway_pairs(gateway_pairs)

    def replace_gateway_pairs(self, gateway_pairs: frozenset[Pair]) -> None:
        """Take a fresh list from the gateway (Cryptomus reports which pairs are available right now)."""
        allowed = [p for p in all_pairs() if p in gateway_pairs]
        if self._operator_filter is not None:
            allowed = [p for p in allowed if p in self._operator_filter]
        self._pairs = allowed

    def coins(self) -> list[str]:
        seen: dict[str, None] = {}
        for pair in self._pairs:
            seen.setdefault(pair.coin, None)
        return list(seen)

    def networks(self, coin: str) -> list[str]:
        return [p.network for p in self._pairs if p.coin == coin]

    def has(self, coin: str, network: str) -> bool:
        return Pair(coin, network) in self._pairs

    def __len__(self) -> int:
        return len(self._pairs)


# The token standard of a network, named for tokens on it ("USDT on TRON (TRC-20)") but not for its own coin:
# "ETH on Ethereum", never "(ERC-20)", which would send a careful user looking for a token that doesn't exist.
TOKEN_STANDARDS: dict[str, str] = {"TRON": "TRC-20", "BSC": "BEP-20", "ETH": "ERC-20"}
NATIVE_COINS: dict[str, str] = {"TRON": "TRX", "BSC": "BNB", "ETH": "ETH", "POLYGON": "POL", "AVALANCHE": "AVAX",
                                "SOL": "SOL", "TON": "TON"}


def network_title(network: str, coin: str | None = None) -> str:
    """The network's name; with its token standard unless `coin` is the network's own coin."""
    title = NETWORK_TITLES.get(network, network)
    standard = TOKEN_STANDARDS.get(network)
    if standard is None or (coin is not None and NATIVE_COINS.get(network) == coin):
        return title
    return f"{title} ({standard})"
