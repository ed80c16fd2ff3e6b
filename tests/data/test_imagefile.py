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
    return imagefile.check(data)


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


def test_decompression_bombs_are_refused_from_their_header(tmp_path):
    from helpers import bomb_png

    bomb = bomb_png()
    assert len(bomb) < 100  # A few bytes that claim 400 million pixels.
    expected = "20000x20000 pixels, above the limit of 89,478,485"
    assert imagefile.check(bomb) == ("png", expected + " (a decompression bomb?)")
    (tmp_path / "bomb.png").write_bytes(bomb)
    assert expected in imagefile.check_file(tmp_path / "bomb.png")[1]
    assert imagefile.check_file(tmp_path / "bomb.png", max_pixels=400_000_000) == ("png", None)
    # JPEG: the frame header is found past a 60 KB application segment by seeking.
    jpeg = io.BytesIO()
    Image.fromarray(np.zeros((30, 41, 3), np.uint8)).save(jpeg, format="JPEG")
    data = jpeg.getvalue()
    padded = data[:2] + b"\xff\xe1" + (60_002).to_bytes(2, "big") + bytes(60_000) + data[2:]
    (tmp_path / "padded.jpg").write_bytes(padded)
    assert imagefile.check_file(tmp_path / "padded.jpg", max_pixels=30 * 41) == ("jpeg", None)
    assert "41x30 pixels" in imagefile.check_file(tmp_path / "padded.jpg", max_pixels=30 * 40)[1]
