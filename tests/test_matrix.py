"""The coin/network matrix: the documented table, narrowed by gateway and operator."""
from __future__ import annotations

import pytest

from services.matrix import SUPPORTED_MATRIX, ConfigPairError, Matrix, Pair, all_pairs, parse_pair_filter


def test_matrix_is_the_smsonline_direct_wallet_table() -> None:
    assert SUPPORTED_MATRIX["USDT"] == ("TRON", "BSC", "ETH", "POLYGON", "ARBITRUM", "AVALANCHE", "SOL", "TON")
    assert SUPPORTED_MATRIX["USDC"] == ("BSC", "ETH", "POLYGON", "ARBITRUM", "AVALANCHE")
    assert SUPPORTED_MATRIX["DAI"] == ("BSC", "POLYGON", "ETH")
    assert SUPPORTED_MATRIX["POL"] == ("POLYGON", "ETH")
    assert SUPPORTED_MATRIX["AVAX"] == ("AVALANCHE",) and SUPPORTED_MATRIX["TRX"] == ("TRON",)
    assert len(all_pairs()) == 8 + 5 + 3 + 2 + 12


def test_operator_narrows_the_matrix() -> None:
    allowed = parse_pair_filter("usdt:tron, BTC")
    matrix = Matrix(frozenset(all_pairs()), allowed)
    assert matrix.coins() == ["USDT", "BTC"]
    assert matrix.networks("USDT") == ["TRON"]
    assert matrix.has("BTC", "BTC") and not matrix.has("USDT", "BSC") and not matrix.has("ETH", "ETH")


def test_gateway_narrows_the_matrix() -> None:
    matrix = Matrix(frozenset({Pair("USDT", "BSC"), Pair("BNB", "BSC")}))
    assert matrix.coins() == ["USDT", "BNB"] and matrix.networks("USDT") == ["BSC"]


@pytest.mark.parametrize("text", ["FOO", "USDT:MOON", "BTC:TRON"])
def test_typos_in_the_filter_are_caught(text: str) -> None:
    with pytest.raises(ConfigPairError):
        parse_pair_filter(text)


def test_empty_filter_means_everything() -> None:
    assert parse_pair_filter(" ") is None
