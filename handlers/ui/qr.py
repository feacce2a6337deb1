"""The deposit card's QR code as a PNG, drawn straight from segno's module matrix.

segno's own PNG writer builds every pixel row in Python (about 3 ms of a 4 ms code, bench/README.md, issue 13).
A QR code is black and white on a grid, so a 1-bit grayscale PNG can be built a module row at a time: each row of
modules becomes one packed pixel row, repeated `scale` times. The result is a plain, valid PNG of the same picture.
"""
from __future__ import annotations

import struct
import zlib

import segno

# A fixed mask: segno's search for the best of the eight costs about half the time a code takes; any mask scans.
QR_MASK = 0
SCALE = 10   # pixels per module: 450-570 px for the codes a deposit address makes, sharp after Telegram's resizing
BORDER = 4   # the quiet zone the QR standard asks, in modules


def qr_png(text: str, *, scale: int = SCALE, border: int = BORDER) -> bytes:
    return png_of_matrix(segno.make(text, error="m", mask=QR_MASK).matrix, scale=scale, border=border)


def png_of_matrix(matrix: tuple[bytearray, ...] | list[bytearray], *, scale: int, border: int) -> bytes:
    """Dark modules (1) black, light ones and the quiet zone white, each module `scale` x `scale` pixels."""
    modules = len(matrix) + 2 * border
    width = modules * scale
    white, black = "1" * scale, "0" * scale
    padding = "1" * (-width % 8)  # a row's last byte is filled out with white

    def pixel_row(cells: bytes) -> bytes:
        bits = white * border + "".join(black if cell else white for cell in cells) + white * border + padding
        return b"\x00" + int(bits, 2).to_bytes(len(bits) // 8, "big")  # filter type 0, then the packed pixels

    quiet = pixel_row(bytes(len(matrix)))  # a QR code is square: a row of light modules as wide as the code
    rows = [quiet * (border * scale)]
    rows.extend(pixel_row(bytes(cells)) * scale for cells in matrix)
    rows.append(quiet * (border * scale))
    header = struct.pack(">IIBBBBB", width, width, 1, 0, 0, 0, 0)  # 1-bit grayscale, no interlace
    return b"".join((b"\x89PNG\r\n\x1a\n", _chunk(b"IHDR", header),
                     _chunk(b"IDAT", zlib.compress(b"".join(rows), 6)), _chunk(b"IEND", b"")))


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
