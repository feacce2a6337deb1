"""Payment URIs for QR codes: a wallet that scans one fills in the address and the amount, not just the address.

Only forms that common wallets read, each checked against its specification:
- BIP 21 (github.com/bitcoin/bips, bip-0021): `<scheme>:<address>?amount=<decimal>`, the amount in whole coins
  with a point and no exponent. Litecoin, Dogecoin, Dash and Bitcoin Cash wallets read the same form under
  their own schemes (`litecoin:`, `dogecoin:`, `dash:`, `bitcoincash:`; a CashAddr address already carries
  `bitcoincash:` and is used as it is).
- TON (ton.org deep links, Tonkeeper's wallet API): `ton://transfer/<address>?amount=<nanotons>`, an integer.
Elsewhere (EVM chains, TRON, Solana, Monero, tokens) there is no form that wallets share: the QR holds the bare
address, and the card says so.
"""
from __future__ import annotations

import re
from decimal import Decimal
from urllib.parse import quote

from services.money import format_crypto

BIP21_SCHEMES: dict[tuple[str, str], str] = {
    ("BTC", "BTC"): "bitcoin", ("LTC", "LTC"): "litecoin", ("DOGE", "DOGE"): "dogecoin",
    ("BCH", "BCH"): "bitcoincash", ("DASH", "DASH"): "dash",
}
NANOTONS_PER_TON = Decimal(10) ** 9

# What an address may hold before we put it in a URI: base58, bech32, CashAddr (with its prefix), TON's base64url
# and raw `0:<hex>` forms. Anything else from a gateway is shown, but not turned into a URI.
_ADDRESS_RE = re.compile(r"[A-Za-z0-9:_\-]{8,128}", re.ASCII)


def payment_uri(coin: str, network: str, address: str | None, amount: Decimal | None) -> str | None:
    """The URI a wallet reads for this exact payment, or None where there is no common one."""
    if not address or amount is None or amount <= 0 or not _ADDRESS_RE.fullmatch(address):
        return None
    scheme = BIP21_SCHEMES.get((coin, network))
    if scheme is not None:
        target = address if address.lower().startswith(f"{scheme}:") else f"{scheme}:{address}"
        return f"{target}?amount={format_crypto(amount)}"
    if (coin, network) == ("TON", "TON"):
        nanotons = amount * NANOTONS_PER_TON
        if nanotons != nanotons.to_integral_value():
            return None  # finer than a nanoton: not a TON amount, so no amount we could pass on honestly
        return f"ton://transfer/{quote(address, safe=':-_')}?amount={int(nanotons)}"
    return None
