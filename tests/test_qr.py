"""The deposit card's QR code: the PNG the bot sends draws exactly segno's code, with the quiet zone, so it scans."""
from __future__ import annotations

import struct
import zlib

import pytest
import segno

from handlers.ui.qr import BORDER, QR_MASK, SCALE, qr_png


def read_png(data: bytes) -> tuple[int, int, list[list[int]]]:
    """A minimal reader for what the bot writes (1-bit grayscale, filter 0): width, height, pixel rows (1 = white).
    Every chunk's CRC is checked, as an image viewer would."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, {}
    while pos < len(data):
        length, = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        crc, = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        assert crc == zlib.crc32(kind + body), kind
        chunks[kind] = chunks.get(kind, b"") + body
        pos += 12 + length
    assert set(chunks) == {b"IHDR", b"IDAT", b"IEND"}
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", chunks[b"IHDR"])
    assert (depth, colour, interlace) == (1, 0, 0)
    raw, stride = zlib.decompress(chunks[b"IDAT"]), (width + 7) // 8 + 1
    assert len(raw) == stride * height
    rows = []
    for y in range(height):
        line = raw[y * stride:(y + 1) * stride]
        assert line[0] == 0  # filter type None
        bits = "".join(f"{byte:08b}" for byte in line[1:])
        rows.append([int(bit) for bit in bits[:width]])
    return width, height, rows


@pytest.mark.parametrize("text", [
    "TXyz1234567890abcdefghijklmnopqrstu",
    "tron:TXyz1234567890abcdefghijklmnopqrstu?amount=12.513245",
    "bitcoin:bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq?amount=0.00012345",
    "0x" + "ab" * 20,
])
def test_the_png_draws_segnos_modules_inside_a_white_quiet_zone(text: str) -> None:
    matrix = segno.make(text, error="m", mask=QR_MASK).matrix
    width, height, rows = read_png(qr_png(text))
    modules = len(matrix) + 2 * BORDER
    assert width == height == modules * SCALE
    for my in range(modules):
        for mx in range(modules):
            inside = BORDER <= my < modules - BORDER and BORDER <= mx < modules - BORDER
            dark = inside and matrix[my - BORDER][mx - BORDER] == 1
            block = {rows[my * SCALE + dy][mx * SCALE + dx] for dy in range(SCALE) for dx in range(SCALE)}
            assert block == {0 if dark else 1}, (text, mx, my)


def test_a_width_that_is_not_a_whole_number_of_bytes_is_padded_with_white() -> None:
    data = qr_png("x", scale=3, border=1)
    width, height, rows = read_png(data)
    assert width % 8 != 0  # 23 modules x 3 px: the last byte of each row carries padding
    assert all(row[0] == 1 and row[-1] == 1 for row in rows)
    idat_length, = struct.unpack(">I", data[33:37])
    raw, stride = zlib.decompress(data[41:41 + idat_length]), (width + 7) // 8 + 1
    spare = 8 - width % 8
    assert all(raw[y * stride + stride - 1] & ((1 << spare) - 1) == (1 << spare) - 1 for y in range(height))
