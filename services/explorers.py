"""Where a customer can look a transaction up: the standard public explorer of each network.

A txid comes from a gateway, so it is checked before it becomes part of a link; a network without one
(Monero hides transactions by design) gets no link, only the id.
"""
from __future__ import annotations

import re

TX_URLS: dict[str, str] = {
    "BTC": "https://mempool.space/tx/{txid}",
    "LTC": "https://litecoinspace.org/tx/{txid}",
    "DOGE": "https://blockchair.com/dogecoin/transaction/{txid}",
    "BCH": "https://blockchair.com/bitcoin-cash/transaction/{txid}",
    "DASH": "https://blockchair.com/dash/transaction/{txid}",
    "ETH": "https://etherscan.io/tx/{txid}",
    "BSC": "https://bscscan.com/tx/{txid}",
    "POLYGON": "https://polygonscan.com/tx/{txid}",
    "ARBITRUM": "https://arbiscan.io/tx/{txid}",
    "AVALANCHE": "https://snowtrace.io/tx/{txid}",
    "TRON": "https://tronscan.org/#/transaction/{txid}",
    "SOL": "https://solscan.io/tx/{txid}",
    "TON": "https://tonviewer.com/transaction/{txid}",
}

# Hex (with or without 0x), base58 (Solana) and TON's base64url hashes; nothing that could break out of a URL.
_TXID_RE = re.compile(r"(0x)?[A-Za-z0-9_\-]{16,128}", re.ASCII)


def tx_url(network: str, txid: str | None) -> str | None:
    """The explorer page of this transaction, or None (no standard explorer, or a txid we won't link)."""
    template = TX_URLS.get(network)
    if template is None or not txid or not _TXID_RE.fullmatch(txid):
        return None
    return template.format(txid=txid)
