"""The layout of a raw dataset tree: which images it holds and the label of each.

`discover` lists a tree without reading any image and decides every label; the converter
(official/data/convert.py) turns its Plan into shards. Layouts: tensorflow/tpu's ImageNet
(`train/<synset>/*.JPEG`, flat `validation/*.JPEG` + `synset_labels.txt`), per-class validation
folders, or one class-per-folder tree split with a validation fraction.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import pathlib

import numpy as np

from official.data import imagefile
from official.data.catalog import TRAIN, VALIDATION
from official.data.digits import stratified_split
from official.errors import UserError

# The reference's validation labels file: one synset per validation image, in sorted file order.
REFERENCE_LABELS_FILE = "synset_labels.txt"

# Bundled ImageNet facts (datasets/README.md says where they come from).
IMAGENET_DIR = pathlib.Path(__file__).resolve().parents[2] / "datasets" / "imagenet2012"
IMAGENET_SYNSETS = IMAGENET_DIR / "synsets.txt"
IMAGENET_NAME = "imagenet2012"  # The TFDS and catalog name.
IMAGENET_VALIDATION_SYNSETS = IMAGENET_DIR / "validation_synsets.txt"
IMAGENET_VALIDATION_IMAGES = 50_000

_VALIDATION_DIR_NAMES = ("validation", "val")


class ConversionError(UserError, ValueError):
    """A wrong layout, flag or output directory; the message names the culprit and the fix."""


@dataclasses.dataclass(frozen=True)
class Plan:
    """What to convert: class names and, per split, (path relative to root, class index)."""

    root: str
    layout: str
    classes: tuple[str, ...]
    names: tuple[str, ...]
    splits: dict[str, tuple[tuple[str, int], ...]]
    unreadable: tuple[tuple[str, str], ...] = ()  # (path relative to root, reason): left out.


def _scan(directory: str, unreadable: list | None = None) -> tuple[list[str], list[str]]:
    """(sorted sub-directory names, sorted names of files whose extension may hold an image).

    Names are taken as the file system gives them (not UTF-8 ones too: Python keeps their
    bytes as surrogate escapes). An entry that cannot even be inspected (a symbolic link loop,
    a link to nowhere, no permission) is left out and added to
    `unreadable` as (path, reason).
    """
    folders, files = [], []
    for entry in os.scandir(directory):
        image = os.path.splitext(entry.name)[1].lower() in imagefile.IMAGE_EXTENSIONS
        try:
            if entry.is_dir():
                if not entry.name.startswith("."):
                    folders.append(entry.name)
            elif entry.is_file():
                if image:
                    files.append(entry.name)
            elif entry.is_symlink():  # Whatever its name: it may stand for a folder.
                raise OSError(errno.ENOENT, "symbolic link to nothing")
        except OSError as e:
            if unreadable is not None:
                unreadable.append((entry.path, e.strerror or str(e)))
    return sorted(folders), sorted(files)


def _subdirs(directory: str) -> list[str]:
    return _scan(directory)[0]


def _image_files(directory: str, unreadable: list | None = None) -> list[str]:
    """Sorted names of the files in `directory` whose extension may hold an image."""
    return _scan(directory, unreadable)[1]


def dataset_name(classes: tuple[str, ...]) -> str:
    """ "imagenet2012" when the classes are exactly ILSVRC 2012's 1,000 synsets, else "".

    Written into labels.json, so that the input pipeline checks a converted ImageNet's size
    against the catalog (official/data/catalog.py) like a TFDS one.
    """
    if len(classes) != 1000 or not IMAGENET_SYNSETS.is_file():
        return ""
    return IMAGENET_NAME if set(classes) == set(read_synset_names(IMAGENET_SYNSETS)) else ""


def read_synset_names(path: str | os.PathLike) -> dict[str, str]:
    """`synset<TAB>name` lines (datasets/imagenet2012/synsets.txt) → {synset: name}."""
    names = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            synset, _, name = line.rstrip("\n").partition("\t")
            if synset:
                names[synset] = name
    return names


def _flat_validation_labels(root: str, val_dir: str, count: int, labels_file: str) -> str:
    """The validation labels file of a flat validation folder (reference layout)."""
    if labels_file:
        if not os.path.isfile(labels_file):
            raise ConversionError(f"--validation_labels={labels_file}: no such file")
        return labels_file
    candidate = os.path.join(root, REFERENCE_LABELS_FILE)
    if os.path.isfile(candidate):
        return candidate
    if count == IMAGENET_VALIDATION_IMAGES and IMAGENET_VALIDATION_SYNSETS.is_file():
        return str(IMAGENET_VALIDATION_SYNSETS)
    raise ConversionError(
        f"{val_dir} holds {count} images but no class folders, and there is no "
        f"{candidate} (one synset per image, in sorted file-name order); pass "
        "--validation_labels=FILE or use validation/<class>/ folders"
    )


def discover(
    raw_data_dir: str,
    *,
    validation_fraction: float = 0.0,
    seed: int = 0,
    validation_labels: str = "",
    synset_names: str | os.PathLike = IMAGENET_SYNSETS,
) -> Plan:
    """Lists the images of a dataset tree and decides every label; reads no image.

    Layouts: (a) `train/<class>/*` + flat `validation/*` + `synset_labels.txt` (tensorflow/tpu);
    (b) `train/<class>/*` + `validation/<class>/*` (or `val/`); (c) one class-per-folder tree
    (`train/<class>/*` or `<class>/*` directly under raw_data_dir) split with
    `validation_fraction`. Extensions are matched case-insensitively; contents are checked
    later, per image.

    Args:
      raw_data_dir: the dataset root.
      validation_fraction: share of every class held out when there is no validation folder.
      seed: seed of that stratified split.
      validation_labels: labels file of a flat validation folder (default: synset_labels.txt
        under raw_data_dir, or the bundled ImageNet list when there are 50,000 images).
      synset_names: `synset<TAB>name` file giving human-readable class names (class folders not
        in it are named after the folder).

    Returns:
      The Plan: classes are the sorted folder names of the training tree.

    Raises:
      ConversionError: a layout that cannot be converted; the message names the problem.
    """
    root = os.path.abspath(os.path.expanduser(raw_data_dir))
    if not os.path.isdir(root):
        raise ConversionError(f"--raw_data_dir={raw_data_dir}: no such directory")
    if not 0.0 <= validation_fraction < 1.0:
        raise ConversionError(f"--validation_fraction={validation_fraction}: must be in [0, 1)")
    val_dir = next(
        (
            os.path.join(root, name)
            for name in _VALIDATION_DIR_NAMES
            if os.path.isdir(os.path.join(root, name))
        ),
        None,
    )
    tree = os.path.join(root, TRAIN)
    if not os.path.isdir(tree):
        if val_dir is None and validation_fraction > 0 and _subdirs(root):
            tree = root
        else:
            raise ConversionError(
                f"--raw_data_dir={raw_data_dir}: expected {root}/train/<class>/ folders of "
                "images (or class folders directly under it with --validation_fraction)"
            )
    unreadable: list[tuple[str, str]] = []
    classes = tuple(_scan(tree, unreadable)[0])
    if not classes:
        raise ConversionError(f"{tree}: no class folders (expected {tree}/<class>/<image>)")
    index = {name: i for i, name in enumerate(classes)}
    train = _listing(root, tree, classes, index, unreadable)
    if not train:
        raise ConversionError(
            f"{tree}: no image files in the class folders "
            f"(extensions {' '.join(imagefile.IMAGE_EXTENSIONS)}, any case)"
        )
    if val_dir is not None:
        if validation_fraction > 0:
            raise ConversionError(
                f"--validation_fraction={validation_fraction}: {val_dir} exists; the fraction "
                "applies only to trees without a validation folder"
            )
        layout, validation = _validation_folder(
            root, tree, val_dir, index, validation_labels, unreadable
        )
    elif validation_fraction > 0:
        layout = f"one tree, {validation_fraction:g} of every class held out (seed {seed})"
        held_out = stratified_split(
            np.array([label for _, label in train]), validation_fraction, seed
        )
        validation = [item for item, out in zip(train, held_out) if out]
        train = [item for item, out in zip(train, held_out) if not out]
        if not validation:
            raise ConversionError(
                f"--validation_fraction={validation_fraction}: holds out no image of {tree}"
            )
    else:
        raise ConversionError(
            f"--raw_data_dir={raw_data_dir}: no validation/ folder; pass "
            "--validation_fraction to hold out a share of every class"
        )
    known = read_synset_names(synset_names) if os.path.isfile(synset_names) else {}
    return Plan(
        root=root,
        layout=layout,
        classes=classes,
        names=tuple(known.get(name, name) for name in classes),
        splits={TRAIN: tuple(train), VALIDATION: tuple(validation)},
        unreadable=tuple((os.path.relpath(path, root), why) for path, why in unreadable),
    )


def _listing(
    root: str, directory: str, class_names, index: dict, unreadable: list
) -> list[tuple[str, int]]:
    """(path relative to root, label) of the images in `directory/<class>/` folders."""
    return [
        (os.path.relpath(os.path.join(directory, name, f), root), index[name])
        for name in class_names
        for f in _image_files(os.path.join(directory, name), unreadable)
    ]


def _validation_folder(
    root: str, tree: str, val_dir: str, index: dict, labels_file: str, unreadable: list
) -> tuple[str, list[tuple[str, int]]]:
    """(layout name, examples) of a validation folder: class folders, or loose images labelled
    by a labels file (tensorflow/tpu's ImageNet layout)."""
    val_classes, flat_files = _scan(val_dir, unreadable)
    if val_classes and flat_files:
        raise ConversionError(
            f"{val_dir}: holds both class folders and loose images ({flat_files[0]}); "
            "use one layout"
        )
    if val_classes:
        unknown = [name for name in val_classes if name not in index]
        if unknown:
            more = f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else ""
            raise ConversionError(
                f"{os.path.join(val_dir, unknown[0])}: class {unknown[0]!r} has no folder "
                f"in {tree}{more}"
            )
        validation = _listing(root, val_dir, val_classes, index, unreadable)
        layout = "validation/<class>/ folders"
    else:
        labels_path = _flat_validation_labels(root, val_dir, len(flat_files), labels_file)
        with open(labels_path, encoding="utf-8") as f:
            synsets = [line.strip() for line in f if line.strip()]
        if len(synsets) != len(flat_files):
            raise ConversionError(
                f"{labels_path}: {len(synsets)} labels for {len(flat_files)} images in "
                f"{val_dir} (one synset per image, in sorted file-name order)"
            )
        for line, synset in enumerate(synsets, 1):
            if synset not in index:
                raise ConversionError(
                    f"{labels_path}: line {line}: synset {synset!r} has no folder in {tree}"
                )
        validation = [
            (os.path.relpath(os.path.join(val_dir, f), root), index[s])
            for f, s in zip(flat_files, synsets)
        ]
        layout = "flat validation/ + labels file"
    if not validation:
        raise ConversionError(f"{val_dir}: no image files")
    return layout, validation
