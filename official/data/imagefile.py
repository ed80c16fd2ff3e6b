"""Recognising image files by their content (magic bytes), never by their names.

Used by every reader of raw image files (the folder source, the TFRecord converter) to report
empty, non-image and truncated files by name instead of failing deep inside TensorFlow.
"""

from __future__ import annotations

import os

# Extensions that may hold images; the format actually stored is decided by `sniff`.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")

# The formats `tf.io.decode_image` decodes (WebP has its own op in recent TensorFlow).
DECODABLE_FORMATS = ("jpeg", "png", "gif", "bmp")

_TAIL_BYTES = 64

# Start-of-frame markers (ITU T.81 Table B.1): C0-CF except DHT (C4), JPG (C8) and DAC (CC).
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Markers without a length field: TEM, RST0-7, SOI, EOI.
_STANDALONE_MARKERS = frozenset([0x01, *range(0xD0, 0xDA)])


def sniff(header: bytes) -> str | None:
    """The image format named by the first bytes of a file, or None if not an image."""
    if header.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if header.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if header[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if header.startswith(b"BM") and len(header) >= 14:
        return "bmp"
    if header[:4] == b"RIFF" and header[8:12] == b"WEBP":
        return "webp"
    return None


def check(header: bytes, tail: bytes, size: int) -> tuple[str | None, str | None]:
    """Classifies a file from its first and last bytes.

    Args:
      header: the first 16 (or more) bytes.
      tail: the last 64 bytes (or the whole file if shorter).
      size: file size in bytes.

    Returns:
      (format, None) for a complete image, (format or None, reason) otherwise.
    """
    if size == 0:
        return None, "empty file"
    fmt = sniff(header)
    if fmt is None:
        return None, "not an image (unrecognised content)"
    # A JPEG ends with the EOI marker FFD9 (ITU T.81 §B.2.1); inside entropy-coded data 0xFF is
    # always followed by 0x00 or a restart marker, so FFD9 near the end means a complete file.
    # Some encoders append padding after it, hence the search over the tail.
    if fmt == "jpeg" and b"\xff\xd9" not in tail:
        return fmt, "truncated JPEG (no end-of-image marker)"
    if fmt == "png" and b"IEND" not in tail:
        return fmt, "truncated PNG (no IEND chunk)"
    return fmt, None


def check_file(path: str | os.PathLike) -> tuple[str | None, str | None]:
    """`check` on a file on disk: reads only its first 16 and last 64 bytes."""
    with open(path, "rb") as f:
        header = f.read(16)
        size = os.fstat(f.fileno()).st_size
        f.seek(max(0, size - _TAIL_BYTES))
        tail = f.read()
    return check(header, tail, size)


def jpeg_header(data: bytes) -> tuple[int, int, int]:
    """(height, width, components) from a JPEG's start-of-frame header, without decoding.

    Components are 3 for colour (YCbCr or RGB), 1 for grayscale and 4 for CMYK/YCCK: the
    converter stores 3-component files byte for byte and re-encodes the others.

    Raises:
      ValueError: the header is malformed or has no frame header before the scan.
    """
    if not data.startswith(b"\xff\xd8"):
        raise ValueError("no JPEG start-of-image marker")
    pos, size = 2, len(data)
    while pos + 4 <= size:
        if data[pos] != 0xFF:
            raise ValueError(f"malformed JPEG header at byte {pos}")
        marker = data[pos + 1]
        if marker == 0xFF:  # Fill byte before a marker (T.81 §B.1.1.2).
            pos += 1
            continue
        if marker in _STANDALONE_MARKERS:
            pos += 2
            continue
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        if marker in _SOF_MARKERS:
            if length < 8 or pos + 10 > size:
                raise ValueError("truncated JPEG frame header")
            height = int.from_bytes(data[pos + 5 : pos + 7], "big")
            width = int.from_bytes(data[pos + 7 : pos + 9], "big")
            if height == 0 or width == 0:
                raise ValueError(f"JPEG frame header gives size {width}x{height}")
            return height, width, data[pos + 9]
        if marker == 0xDA or length < 2:  # Scan data before any frame header.
            break
        pos += 2 + length
    raise ValueError("no JPEG frame header")
