"""Small dataset trees of real JPEG/PNG bytes for the converter's tests (layout, shards,
verify, sources): made in the test, with the quirks real ImageNet has."""

import hashlib
import io
import os

import numpy as np
from PIL import Image

from official.data import tfrecord

# Real ImageNet synsets, so the bundled names apply: tench, goldfish, great white shark.
SYNSETS = ("n01440764", "n01443537", "n01484850")
NAMES = (
    "tench, Tinca tinca",
    "goldfish, Carassius auratus",
    "great white shark, white shark, man-eater, man-eating shark, Carcharodon carcharias",
)


def smooth_pixels(rng, height=30, width=40, tint=None) -> np.ndarray:
    """Smooth colour content (upsampled noise), like a photo rather than white noise; `tint`
    (a channel index) makes that channel dominate, so that classes are learnable."""
    low = rng.integers(0, 256, (max(2, height // 8), max(2, width // 8), 3), dtype=np.uint8)
    if tint is not None:
        low = low // 4
        low[..., tint] += 160
    return np.asarray(Image.fromarray(low).resize((width, height), Image.BICUBIC))


def encode(pixels: np.ndarray, fmt: str = "JPEG", mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).convert(mode).save(buffer, format=fmt, quality=90)
    return buffer.getvalue()


# Files in train/ whose content the converter must fix or skip: name → (content, expected).
def quirk_files(rng) -> dict:
    whole = encode(smooth_pixels(rng, tint=0))
    return {
        f"{SYNSETS[0]}/{SYNSETS[0]}_png.JPEG": (
            encode(smooth_pixels(rng, tint=0), "PNG"),
            "PNG content",
        ),
        f"{SYNSETS[1]}/{SYNSETS[1]}_cmyk.JPEG": (
            encode(smooth_pixels(rng, tint=1), mode="CMYK"),
            "CMYK JPEG",
        ),
        f"{SYNSETS[2]}/{SYNSETS[2]}_gray.JPEG": (
            encode(smooth_pixels(rng, tint=2), mode="L"),
            "grayscale JPEG",
        ),
        f"{SYNSETS[0]}/{SYNSETS[0]}_pic.bmp": (
            encode(smooth_pixels(rng, tint=0), "BMP"),
            "BMP content",
        ),
        f"{SYNSETS[1]}/{SYNSETS[1]}_anim.GIF": (
            encode(smooth_pixels(rng, tint=1), "GIF"),
            "GIF content",
        ),
        f"{SYNSETS[2]}/{SYNSETS[2]}_pic.webp": (
            encode(smooth_pixels(rng, tint=2), "WEBP"),
            "WEBP content",
        ),
        f"{SYNSETS[0]}/{SYNSETS[0]}_cut.JPEG": (whole[: len(whole) // 2], "skip:unreadable JPEG"),
        f"{SYNSETS[1]}/{SYNSETS[1]}_empty.JPEG": (b"", "skip:empty file"),
        f"{SYNSETS[2]}/{SYNSETS[2]}_notes.JPEG": (b"not an image", "skip:not an image"),
    }


def make_tree(
    root,
    *,
    per_class=6,
    val_per_class=2,
    validation="flat",
    quirks=False,
    size=(30, 40),
    seed=0,
) -> dict:
    """Writes a dataset tree; returns {relative path: bytes} of every file written.

    validation: "flat" (ILSVRC2012_val_*.JPEG + synset_labels.txt, the reference layout),
    "folders" (validation/<synset>/*) or "none".
    """
    rng = np.random.default_rng(seed)
    files = {}
    for c, synset in enumerate(SYNSETS):
        for i in range(per_class):
            ext = (".JPEG", ".jpg", ".JpEg")[i % 3]  # Extensions match in any case.
            files[f"train/{synset}/{synset}_{i}{ext}"] = encode(smooth_pixels(rng, *size, tint=c))
        if validation == "folders":
            for i in range(val_per_class):
                pixels = smooth_pixels(rng, *size, tint=c)
                files[f"validation/{synset}/val_{c}_{i}.JPEG"] = encode(pixels)
    if validation == "flat":
        labels = []
        for i in range(val_per_class * len(SYNSETS)):
            c = (i * 2) % len(SYNSETS)
            pixels = smooth_pixels(rng, *size, tint=c)
            files[f"validation/ILSVRC2012_val_{i + 1:08d}.JPEG"] = encode(pixels)
            labels.append(SYNSETS[c])
        files["synset_labels.txt"] = ("\n".join(labels) + "\n").encode()
    if quirks:
        files.update({f"train/{name}": content for name, (content, _) in quirk_files(rng).items()})
    files[f"train/{SYNSETS[0]}/README.txt"] = b"ignored: not an image extension"
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    return files


def read_output(output_dir) -> dict:
    """{split: [ImageRecord, ...]} in shard order, read with our reader."""
    records = {"train": [], "validation": []}
    for name in sorted(os.listdir(output_dir)):
        if name.startswith(("train-", "validation-")):
            with open(os.path.join(output_dir, name), "rb") as f:
                records[name.split("-")[0]] += [
                    tfrecord.decode(r) for r in tfrecord.read_records(f)
                ]
    return records


def digests(directory) -> dict:
    return {
        name: hashlib.sha256((directory / name).read_bytes()).hexdigest()
        for name in sorted(os.listdir(directory))
    }
