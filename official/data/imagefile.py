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
