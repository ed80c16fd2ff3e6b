import io

import numpy as np
import pytest
from PIL import Image

from official.data import imagefile


def _encode(fmt: str, mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((6, 5, 3 if mode == "RGB" else 1), np.uint8).squeeze()).convert(
        mode
    ).save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "fmt, expected",
    [("JPEG", "jpeg"), ("PNG", "png"), ("GIF", "gif"), ("BMP", "bmp"), ("WEBP", "webp")],
)
def test_sniff_by_content(fmt, expected):
    assert imagefile.sniff(_encode(fmt)[:16]) == expected


def _check(data: bytes):
    return imagefile.check(data[:16], data[-64:], len(data))


def test_complete_files_pass():
    for fmt in ("JPEG", "PNG", "GIF", "BMP"):
        assert _check(_encode(fmt))[1] is None


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"", "empty file"),
        (b"hello, I am a text file", "not an image"),
    ],
)
def test_bad_files(data, reason):
    assert reason in _check(data)[1]


def test_truncated_jpeg_and_png():
    jpeg = _encode("JPEG")
    assert _check(jpeg[: len(jpeg) // 2]) == ("jpeg", "truncated JPEG (no end-of-image marker)")
    png = _encode("PNG")
    assert _check(png[:-20]) == ("png", "truncated PNG (no IEND chunk)")


def test_check_file_reads_from_disk(tmp_path):
    path = tmp_path / "x.JPEG"
    path.write_bytes(_encode("PNG"))
    assert imagefile.check_file(path) == ("png", None)  # a PNG named .JPEG is still a PNG


@pytest.mark.parametrize("mode, components", [("RGB", 3), ("L", 1), ("CMYK", 4)])
def test_jpeg_header_reads_size_and_components_without_decoding(mode, components):
    buffer = io.BytesIO()
    Image.new(mode, (37, 21)).save(buffer, format="JPEG", progressive=mode == "L")
    data = buffer.getvalue()
    assert imagefile.jpeg_header(data) == (21, 37, components)
    with pytest.raises(ValueError, match="no JPEG frame header"):
        imagefile.jpeg_header(data[:20])
    with pytest.raises(ValueError, match="start-of-image"):
        imagefile.jpeg_header(_encode("PNG"))
