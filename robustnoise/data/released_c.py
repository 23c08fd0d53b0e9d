"""The released common-corruption test sets (Hendrycks & Dietterich 2019; Mu & Gilmer 2019; docs/release-formats.md),
one corruption and severity per dataset, used as released: resizing the 224 / 64 px JPEGs again is a known mistake."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision.datasets import ImageFolder
from torchvision.datasets.utils import check_integrity

from robustnoise.corruptions.make_c import MNIST_SEVERITY_FILE
from robustnoise.corruptions.presets import (
    ALL_CORRUPTIONS,
    MNIST_C_CORRUPTIONS,
    MNIST_C_LEFTOVERS,
    SEVERITIES,
    check_severity,
)
from robustnoise.data.base import TO_FLOAT
from robustnoise.utils.errors import DatasetNotFoundError, RobustnoiseError

CIFAR_C_MD5: Mapping[str, tuple[str, str]] = {
    "gaussian_noise": ("ecaf8b9a2399ffeda7680934c33405fd", "ecc4d366eac432bdf25c024086f5e97d"),
    "shot_noise": ("3a7239bb118894f013d9bf1984be7f11", "b0a1fa6e1e465a747c1b204b1914048a"),
    "impulse_noise": ("2090e01c83519ec51427e65116af6b1a", "3b3c210ddfa0b5cb918ff4537a429fef"),
    "defocus_blur": ("7d1322666342a0702b1957e92f6254bc", "d923e3d9c585a27f0956e2f2ad832564"),
    "glass_blur": ("7361fb4019269e02dbf6925f083e8629", "0bf384f38e5ccbf8dd479d9059b913e1"),
    "motion_blur": ("fffa5f852ff7ad299cfe8a7643f090f4", "732a7e2e54152ff97c742d4c388c5516"),
    "zoom_blur": ("6ea8e63f1c5cdee1517533840641641b", "0204613400c034a81c4830d5df81cb82"),
    "snow": ("bb238de8555123da9c282dea23bd6e55", "0237be164583af146b7b144e73b43465"),
    "frost": ("31f6ab3bce1d9934abfb0cc13656f141", "3a39c6823bdfaa0bf8b12fe7004b8117"),
    "fog": ("7b397314b5670f825465fbcd1f6e9ccd", "4efc7ebd5e82b028bdbe13048e3ea564"),
    "brightness": ("0a81ef75e0b523c3383219c330a85d48", "f22d7195aecd6abb541e27fca230c171"),
    "contrast": ("3c8262171c51307f916c30a3308235a8", "322bb385f1d05154ee197ca16535f71e"),
    "elastic_transform": ("9421657c6cd452429cf6ce96cc412b5f", "a0792bd6581f6810878be71acedfc65a"),
    "pixelate": ("0f14f7e2db14288304e1de10df16832f", "96c00c60f144539e14cffb02ddbd0640"),
    "jpeg_compression": ("2b9cc4c864e0193bb64db8d7728f8187", "c851b7f1324e1d2ffddeb76920576d11"),
    "speckle_noise": ("ef00b87611792b00df09c0b0237a1e30", "e3f215b1a0f9fd9fd6f0d1cf94a7ce99"),
    "gaussian_blur": ("c33370155bc9b055fb4a89113d3c559d", "5204ba0d557839772ef5a4196a052c3e"),
    "spatter": ("8a5a3903a7f8f65b59501a6093b4311e", "12ccf41d62564d36e1f6a6ada5022728"),
    "saturate": ("1cfae0964219c5102abbb883e538cc56", "c0697e9fdd646916a61e9c312c77bf6b"),
    "labels": ("c439b113295ed5254878798ffe28fd54", "bb4026e9ce52996b95f439544568cdb2"),
}
"""md5 of each ``<name>.npy`` of CIFAR-10-C and of CIFAR-100-C (Zenodo 2535967 / 3555552)."""

_CIFAR_VARIANTS = {"cifar10": ("CIFAR-10-C", 10, 0), "cifar100": ("CIFAR-100-C", 100, 1)}  # name, classes, md5 column


def _ordered(names: Sequence[str], canonical: Sequence[str]) -> list[str]:
    """``names`` with the known ones first in canonical order, then the others sorted."""
    return [n for n in canonical if n in names] + sorted(set(names) - set(canonical))


def _subdirs(path: Path) -> list[str]:
    return [p.name for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")]


@lru_cache(maxsize=256)
def _intact(path: str, md5: str, size: int, mtime_ns: int) -> bool:
    """``check_integrity`` once per file version: the 5 severities of a file hash it once."""
    return check_integrity(path, md5)


class _Released:
    """What the released readers share: ``key``, and the one-line error for a missing root / corruption."""

    name: str
    layout: str
    corruption: str
    severity: int

    @property
    def key(self) -> str:
        return f"{self.corruption}/s{self.severity}"

    def _missing(self, path: Path, found: Sequence[str] = (), what: str = "corruptions") -> DatasetNotFoundError:
        if not path.parent.is_dir():  # the root itself
            return DatasetNotFoundError(f"{self.name} not found at {path.parent}; expected layout: {self.layout}")
        listed = f" ({what} found: {', '.join(found) or 'none'})" if what else ""
        return DatasetNotFoundError(f"{self.name}: missing {path}{listed}; expected layout: {self.layout}")

    def _fail(self, path: Path, problem: str) -> DatasetNotFoundError:
        return DatasetNotFoundError(f"{self.name}: {path} {problem}")


class _NpyImages(_Released, Dataset):
    """Lazily memory-mapped uint8 image rows of one .npy file (one of ``blocks`` equal severity blocks), plus labels."""

    def _open(
        self, images_path: Path, labels_path: Path, shape: tuple[int, ...], classes: int | None, blocks: int = 1
    ) -> None:
        """Check both files (uint8 images of ``shape``, one in-range label each) and select row block ``severity``."""
        images, labels = self._load(images_path), self._load(labels_path)
        rows, shapes = images.shape[0] if images.ndim else 0, (shape, shape[:2]) if shape[2:] == (1,) else (shape,)
        if images.dtype != np.uint8 or images.ndim < 3 or images.shape[1:] not in shapes:
            expected = f"expected uint8 (N, {', '.join(map(str, shape))})"
            raise self._fail(images_path, f"has dtype {images.dtype} and shape {images.shape}; {expected}")
        if blocks > 1 and (rows == 0 or rows % blocks):
            raise self._fail(images_path, f"has {rows} rows, not 5 equal severity blocks (truncated or not a -C file)")
        if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
            raise self._fail(labels_path, f"has dtype {labels.dtype} and shape {labels.shape}; expected 1-D integers")
        if classes is not None and labels.size and (labels.min() < 0 or labels.max() >= classes):
            found = f"{labels.min()}..{labels.max()}"
            raise self._fail(labels_path, f"has labels in {found}, outside 0..{classes - 1} (wrong dataset?)")
        if labels.shape[0] != rows:
            raise self._fail(labels_path, f"has {labels.shape[0]} labels but {images_path} has {rows} images")
        self.images_path, self.length = images_path, rows // blocks
        self.offset = (self.severity - 1) * self.length if blocks > 1 else 0
        self.labels = np.array(labels[self.offset : self.offset + self.length], dtype=np.int64)
        self._images: np.ndarray | None = None

    def _load(self, path: Path) -> np.ndarray:
        """Memory-map ``path``; a missing, truncated or non-npy file is one :class:`DatasetNotFoundError` line."""
        if not path.is_file():
            raise self._missing(path, what="")
        try:
            array = np.load(path, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError, EOFError) as err:
            first = (str(err).strip().splitlines() or [type(err).__name__])[0]
            raise self._fail(path, f"cannot be read (truncated or not a .npy file: {first}); re-download it") from err
        if not isinstance(array, np.ndarray):
            raise self._fail(path, "is not a single .npy array")
        return array

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_images": None}  # workers re-open the memory map instead of pickling its contents

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if not 0 <= index < self.length:  # the memory map holds the other severities' rows past this set
            raise IndexError(f"index {index} out of range for {self.length} images")
        if self._images is None:
            self._images = np.load(self.images_path, mmap_mode="r", allow_pickle=False)
        row = np.array(self._images[self.offset + index], dtype=np.uint8, copy=True)
        return TO_FLOAT(row).as_subclass(torch.Tensor), int(self.labels[index])


class CifarC(_NpyImages):
    """One corruption at one severity of CIFAR-10-C or -100-C; ``variant`` (None: either) sets labels and md5."""

    layout = (
        "<root>/<corruption>.npy (uint8 (50000, 32, 32, 3): severities 1..5 as consecutive blocks of 10000 rows) "
        "and <root>/labels.npy ((50000,) integers)"
    )

    def __init__(
        self, root: str | Path, corruption: str, severity: int, variant: str | None = None, verify_md5: bool = False
    ) -> None:
        self.name, num_classes, column = _CIFAR_VARIANTS[variant] if variant else ("CIFAR-C", None, None)
        self.root, self.corruption, self.variant = Path(root), corruption, variant
        self.severity = check_severity(severity)
        images_path, labels_path = self.root / f"{self.corruption}.npy", self.root / "labels.npy"
        if not images_path.is_file():
            found = dict.fromkeys(n for n, _ in available_sets("cifar10c", self.root))
            raise self._missing(images_path, list(found), "corruption files")
        self._open(images_path, labels_path, (32, 32, 3), num_classes, blocks=len(SEVERITIES))
        for path in (images_path, labels_path) if verify_md5 else ():
            if path.stem not in CIFAR_C_MD5:
                raise self._fail(path, "has no released md5 (unknown file name)")
            expected = CIFAR_C_MD5[path.stem] if column is None else CIFAR_C_MD5[path.stem][column : column + 1]
            stat = path.stat()
            if not any(_intact(str(path), md5, stat.st_size, stat.st_mtime_ns) for md5 in expected):
                raise self._fail(path, f"does not have the released md5 {' or '.join(expected)} (re-download it)")


def mnist_c_severity(root: str | Path) -> int:
    """The severity of the sets under an MNIST-layout ``root``: its :data:`MNIST_SEVERITY_FILE`, else 1 (MNIST-C)."""
    path = Path(root) / MNIST_SEVERITY_FILE
    return check_severity(int(path.read_text().strip())) if path.is_file() else 1


class MnistC(_NpyImages):
    """One MNIST-C corruption, split ``test`` or ``train``, keyed with the root's :func:`mnist_c_severity`."""

    name = "MNIST-C"
    layout = "<root>/<15 corruptions, identity>/{train,test}_{images,labels}.npy, images uint8 (N, 28, 28, 1)"

    def __init__(self, root: str | Path, corruption: str, split: str = "test") -> None:
        if split not in ("train", "test"):
            raise RobustnoiseError(f"MNIST-C split must be 'train' or 'test', got {split!r}")
        self.root, self.corruption, self.split = Path(root), corruption, split
        folder = self.root / self.corruption
        if not folder.is_dir():
            raise self._missing(folder, [n for n, _ in available_sets("mnistc", self.root)])
        self.severity = mnist_c_severity(self.root)
        self._open(folder / f"{split}_images.npy", folder / f"{split}_labels.npy", (28, 28, 1), 10)


class ImageNetC(_Released, ImageFolder):
    """ImageNet-C at one corruption and severity; labels: positions of the sorted wnids, as in training."""

    name = "ImageNet-C"
    default_image_size, default_num_classes = 224, 1000
    layout = "<root>/<corruption>/<1..5>/<wnid>/*.JPEG (1000 wnid folders of 224x224 JPEGs per severity)"
    frost_hint = ""  # added to a class count mismatch of frost/ or of 1000 folders

    def __init__(
        self,
        root: str | Path,
        corruption: str,
        severity: int,
        class_to_idx: Mapping[str, int] | None = None,
        image_size: int | None = None,
        num_classes: int | None = None,
    ) -> None:
        self.corruption, self.severity = corruption, check_severity(severity)
        self.image_size = self.default_image_size if image_size is None else int(image_size)
        self.train_classes = dict(class_to_idx) if class_to_idx is not None else None
        self.num_classes = num_classes or (len(class_to_idx) if class_to_idx is not None else self.default_num_classes)
        root = Path(root)
        if not (root / self.corruption).is_dir():
            found = _ordered(_subdirs(root), ALL_CORRUPTIONS) if root.is_dir() else []
            raise self._missing(root / self.corruption, found, "corruption folders")
        folder = root / self.corruption / str(self.severity)
        if not folder.is_dir():
            raise self._missing(folder, what="")
        super().__init__(str(folder), loader=self._load, allow_empty=True)
        if not self.samples:
            raise self._fail(folder, f"has no images (*.JPEG); expected layout: {self.layout}")
        self._load(self.samples[0][0], decode=False)

    def find_classes(self, directory: str | Path) -> tuple[list[str], dict[str, int]]:
        """The sorted wnid folders, checked against the expected count and the training set's mapping."""
        wnids = sorted(_subdirs(Path(directory)))
        if len(wnids) != self.num_classes:
            hint = self.frost_hint if self.corruption == "frost" or len(wnids) == 1000 else ""
            raise self._fail(Path(directory), f"has {len(wnids)} class folders, expected {self.num_classes}{hint}")
        found, train = {w: i for i, w in enumerate(wnids)}, self.train_classes
        if train is not None and set(train) != set(found):
            missing, extra = sorted(set(train) - set(found)), sorted(set(found) - set(train))
            raise RobustnoiseError(
                f"{self.name}: class folders of {directory} differ from the training classes "
                f"({len(missing)} missing, e.g. {missing[:3]}; {len(extra)} unknown, e.g. {extra[:3]})"
            )
        if train is not None and train != found:
            wrong = next(w for w in found if train[w] != found[w])
            raise RobustnoiseError(
                f"{self.name}: the training set's class_to_idx is not the sorted-wnid order of {directory} "
                f"({wrong} is {train[wrong]} in training, {found[wrong]} here); "
                "train with class index = position of the sorted wnid (e.g. sort wnids.txt)"
            )
        return wnids, found

    def _load(self, path: str, decode: bool = True) -> torch.Tensor | None:
        """The image as float32 in [0, 1], after checking its size (``decode=False``: the header only)."""
        with Image.open(path) as img:
            if img.size != (self.image_size, self.image_size):
                size, expected = f"{img.size[0]}x{img.size[1]}", f"{self.image_size}x{self.image_size}"
                released = f"released {self.name} images are used without resize or crop; set image_size if intended"
                raise self._fail(Path(path), f"is {size} px, expected {expected} ({released})")
            return TO_FLOAT(img.convert("RGB")).as_subclass(torch.Tensor) if decode else None


class TinyImageNetC(ImageNetC):
    """Tiny-ImageNet-C (ImageNet-C's layout, 200 wnids of 64 px JPEGs), naming the broken first ``frost/`` upload."""

    name = "Tiny-ImageNet-C"
    default_image_size, default_num_classes = 64, 200
    layout = "<root>/<corruption>/<1..5>/<wnid>/*.JPEG (200 wnid folders of 64x64 JPEGs per severity)"
    frost_hint = (
        "; the first Tiny-ImageNet-C upload (Zenodo 2536630) has a broken frost/ with 1000 ImageNet class folders "
        "(hendrycks/robustness#60): replace it with frost/ from the corrected re-upload, Zenodo 8206060"
    )


_KINDS: Mapping[str, tuple[type[_Released], dict[str, Any], tuple[str, ...], int, int, int | None]] = {
    "cifar10c": (CifarC, {"variant": "cifar10"}, ("cifar10",), 10, 3, 32),
    "cifar100c": (CifarC, {"variant": "cifar100"}, ("cifar100",), 100, 3, 32),
    "mnistc": (MnistC, {}, ("mnist", "digits"), 10, 1, 28),  # the bundled digits are the offline MNIST stand-in
    "imagenetc": (ImageNetC, {}, ("imagenet",), 1000, 3, None),  # 224 px; global-pooling models take any size
    "tinyimagenetc": (TinyImageNetC, {}, ("tiny_imagenet",), 200, 3, 64),
}
"""``kind -> (reader, its arguments, clean datasets, classes, channels, image size)`` of the clean data it fits."""
RELEASED_C_KINDS: tuple[str, ...] = tuple(_KINDS)
RELEASED_C_KIND_OF_DATA = {data: kind for kind, spec in _KINDS.items() for data in spec[2]}  # e.g. cifar10 -> cifar10c


def _check_kind(kind: str) -> str:
    if kind not in _KINDS:
        raise RobustnoiseError(f"unknown released -C dataset {kind!r}; valid: {', '.join(RELEASED_C_KINDS)}")
    return kind


def check_matches_clean(kind: str, data: str, num_classes: int, in_chans: int, image_size: int) -> None:
    """Refuse (one line) a released -C set that does not belong to the clean data ``data`` the model is built for."""
    names, classes, chans, size = _KINDS[_check_kind(kind)][2:]
    base = data.split("+")[0]
    other_data = base in RELEASED_C_KIND_OF_DATA and base not in names
    problems = [f"it belongs to {' or '.join(names)}, not data={base}"] if other_data else []
    for what, released, clean in (("classes", classes, num_classes), ("channels", chans, in_chans)):
        if released != clean:
            problems.append(f"{released} {what}, the clean data {clean}")
    if size is not None and size != image_size:
        problems.append(f"{size} px images, the clean data {image_size} px")
    if problems:
        raise RobustnoiseError(
            f"the released {kind} set does not match the clean data the model is built for: {'; '.join(problems)} "
            f"(use the -C set of the training data, e.g. data={names[0]} eval={kind})"
        )


def available_sets(kind: str, root: str | Path) -> list[tuple[str, int]]:
    """The ``(corruption, severity)`` sets under ``root`` (canonical order; presence only; none without ``root``)."""
    _check_kind(kind)
    root = Path(root)
    if not root.is_dir():
        return []
    if kind in ("cifar10c", "cifar100c"):
        stems = [p.stem for p in root.glob("*.npy") if p.is_file() and p.stem != "labels"]
        return [(c, s) for c in _ordered(stems, ALL_CORRUPTIONS) for s in SEVERITIES]
    if kind == "mnistc":
        names = [d for d in _subdirs(root) if (root / d / "test_images.npy").is_file()]
        level = mnist_c_severity(root)
        return [(c, level) for c in _ordered(names, (*MNIST_C_CORRUPTIONS, "identity", *MNIST_C_LEFTOVERS))]
    corruptions = _ordered(_subdirs(root), ALL_CORRUPTIONS)
    return [(c, s) for c in corruptions for s in SEVERITIES if (root / c / str(s)).is_dir()]


def released_c_sets(
    kind: str,
    root: str | Path,
    corruptions: Sequence[str] | None = None,
    severities: Sequence[int] | None = None,
    **kwargs: Any,
) -> list[tuple[str, int, Dataset]]:
    """``[(corruption, severity, dataset)]`` under ``root`` (``None``: all present); MNIST-C: its one severity."""
    root = Path(root)
    reader, defaults = _KINDS[_check_kind(kind)][:2]
    present = available_sets(kind, root)
    if corruptions is None and not present:
        raise DatasetNotFoundError(f"no {kind} corruption sets found under {root}; expected layout: {reader.layout}")
    wanted = None if severities is None else [check_severity(s) for s in severities]
    if reader is MnistC:
        level = mnist_c_severity(root)
        if wanted is not None and wanted != [level]:
            warnings.warn(f"{root} has one severity ({level}); ignoring severities {wanted}", stacklevel=2)
        wanted = [level]
    if corruptions is None:
        corruptions = list(dict.fromkeys(c for c, _ in present))
    sets = []
    for corruption in corruptions:
        for severity in wanted if wanted is not None else [s for c, s in present if c == corruption] or [1]:
            args = () if reader is MnistC else (severity,)
            sets.append((corruption, severity, reader(root, corruption, *args, **{**defaults, **kwargs})))
    return sets
