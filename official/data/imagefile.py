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
# Images above this many pixels are refused before decoding: Pillow's own limit
# (Image.MAX_IMAGE_PIXELS, about a quarter GiB of RGBA) and the default of
# `--config.data.max_image_pixels` and the converter's `--max_image_pixels`.
MAX_IMAGE_PIXELS = 89_478_485

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


def check(
    data: bytes, max_pixels: int = MAX_IMAGE_PIXELS, start: int = 0, end: int | None = None
) -> tuple[str | None, str | None]:
    """Classifies image bytes held in memory, or `data[start:end]` without copying it (see
    `check_file`)."""
    end = len(data) if end is None else end

    def read_at(offset: int, count: int) -> bytes:
        return data[start + offset : min(start + offset + count, end)]

    return _check(read_at, end - start, max_pixels)


def decoding_problem(fmt: str | None, problem: str | None) -> str | None:
    """Why the input pipeline cannot decode an image that `check` or `check_file` classified
    as (fmt, problem), or None."""
    if problem is None and fmt not in DECODABLE_FORMATS:
        return f"{fmt} images are not supported"
    return problem


def check_file(
    path: str | os.PathLike, max_pixels: int = MAX_IMAGE_PIXELS
) -> tuple[str | None, str | None]:
    """Classifies a file from its first and last bytes and its header, without decoding it.

    Only a few small reads: the first 16 and last 64 bytes, and the headers up to the image
    size (a JPEG's markers are walked by seeking past their segments).

    Returns:
      (format, None) for a complete image within the pixel limit, (format or None, reason)
      otherwise: empty, not an image, truncated, a header without a size, or more than
      `max_pixels` pixels (a decompression bomb: a few hundred KB can claim gigabytes).
    """
    with open(path, "rb") as f:

        def read_at(offset: int, count: int) -> bytes:
            f.seek(offset)
            return f.read(count)

        return _check(read_at, os.fstat(f.fileno()).st_size, max_pixels)


def _check(read_at, size: int, max_pixels: int) -> tuple[str | None, str | None]:
    if size == 0:
        return None, "empty file"
    fmt = sniff(read_at(0, 16))
    if fmt is None:
        return None, "not an image (unrecognised content)"
    # A JPEG ends with the EOI marker FFD9 (ITU T.81 §B.2.1); inside entropy-coded data 0xFF is
    # always followed by 0x00 or a restart marker, so FFD9 near the end means a complete file.
    # Some encoders append padding after it, hence the search over the tail.
    tail = read_at(max(0, size - _TAIL_BYTES), _TAIL_BYTES)
    if fmt == "jpeg" and b"\xff\xd9" not in tail:
        return fmt, "truncated JPEG (no end-of-image marker)"
    if fmt == "png" and b"IEND" not in tail:
        return fmt, "truncated PNG (no IEND chunk)"
    try:
        height, width = _size(fmt, read_at)
    except ValueError as e:
        return fmt, f"unreadable {fmt.upper()} header ({e})"
    if height * width > max_pixels:
        return fmt, (
            f"{width}x{height} pixels, above the limit of {max_pixels:,} (a decompression bomb?)"
        )
    return fmt, None


def _size(fmt: str, read_at) -> tuple[int, int]:
    """(height, width) from an image's header; ValueError when it has none."""
    if fmt == "jpeg":
        height, width, _ = _jpeg_frame(read_at)
        return height, width
    if fmt == "png":  # IHDR, the first chunk: big-endian width and height.
        header = read_at(16, 8)
        width, height = int.from_bytes(header[:4], "big"), int.from_bytes(header[4:8], "big")
    elif fmt == "gif":  # Logical screen descriptor: little-endian 16-bit width and height.
        header = read_at(6, 4)
        width, height = int.from_bytes(header[:2], "little"), int.from_bytes(header[2:4], "little")
    elif fmt == "bmp":  # BITMAPINFOHEADER: signed 32-bit width and height (negative: top-down).
        header = read_at(18, 8)
        width = abs(int.from_bytes(header[:4], "little", signed=True))
        height = abs(int.from_bytes(header[4:8], "little", signed=True))
    else:  # WebP: the first chunk after "RIFF....WEBP" says the canvas size.
        chunk, header = read_at(12, 4), read_at(20, 10)
        if chunk == b"VP8X":
            width = 1 + int.from_bytes(header[4:7], "little")
            height = 1 + int.from_bytes(header[7:10], "little")
        elif chunk == b"VP8L":
            bits = int.from_bytes(header[1:5], "little")
            width, height = 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
        elif chunk == b"VP8 ":
            header = read_at(26, 4)
            width = int.from_bytes(header[:2], "little") & 0x3FFF
            height = int.from_bytes(header[2:4], "little") & 0x3FFF
        else:
            raise ValueError(f"unknown WebP chunk {chunk!r}")
    if len(header) < 4 or width == 0 or height == 0:
        raise ValueError(f"size {width}x{height}")
    return height, width


def jpeg_header(data: bytes) -> tuple[int, int, int]:
    """(height, width, components) from a JPEG's start-of-frame header, without decoding.

    Components are 3 for colour (YCbCr or RGB), 1 for grayscale and 4 for CMYK/YCCK: the
    converter stores 3-component files byte for byte and re-encodes the others.

    Raises:
      ValueError: the header is malformed or has no frame header before the scan.
    """
    return _jpeg_frame(lambda offset, count: data[offset : offset + count])


def _jpeg_frame(read_at) -> tuple[int, int, int]:
    """Walks a JPEG's marker segments (T.81 §B.1) to the frame header, reading only headers."""
    if read_at(0, 2) != b"\xff\xd8":
        raise ValueError("no JPEG start-of-image marker")
    pos = 2
    while True:
        segment = read_at(pos, 4)
        if len(segment) < 4:
            break
        if segment[0] != 0xFF:
            raise ValueError(f"malformed JPEG header at byte {pos}")
        marker = segment[1]
        if marker == 0xFF:  # Fill byte before a marker (T.81 §B.1.1.2).
            pos += 1
            continue
        if marker in _STANDALONE_MARKERS:
            pos += 2
            continue
        length = int.from_bytes(segment[2:4], "big")
        if marker in _SOF_MARKERS:
            frame = read_at(pos + 4, 6)
            if length < 8 or len(frame) < 6:
                raise ValueError("truncated JPEG frame header")
            height = int.from_bytes(frame[1:3], "big")
            width = int.from_bytes(frame[3:5], "big")
            if height == 0 or width == 0:
                raise ValueError(f"JPEG frame header gives size {width}x{height}")
            return height, width, frame[5]
        if marker == 0xDA or length < 2:  # Scan data before any frame header.
            break
        pos += 2 + length
    raise ValueError("no JPEG frame header")
