"""``task=make_c``: write the -C version of a datamodule's test split in the layout of the released files.

Every test image under every requested (corruption, severity), seeded like the in-memory evaluation
(``sample_seeds(seed, test index, corruption_id, severity)``), as ``cifar_npy``, ``mnistc_npy`` or JPEG ``folders``
(layouts, class folders and options: ``docs/corruptions.md``; read back by :mod:`robustnoise.data.released_c`).
uint8 by truncation with ``fidelity`` (the released ``np.uint8``), otherwise by rounding; MNIST-C always rounds.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import OmegaConf
from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from torchvision.io import encode_jpeg
from tqdm.auto import tqdm

from robustnoise.corruptions.api import corrupt
from robustnoise.corruptions.datasets import resolve_sets
from robustnoise.corruptions.digital import quantize_uint8_round
from robustnoise.corruptions.fidelity import RELEASE_JPEG_QUALITY, quantize_uint8_truncate
from robustnoise.corruptions.presets import SEVERITIES
from robustnoise.corruptions.transforms import image_seeds, to_float_image
from robustnoise.utils.errors import ConfigError
from robustnoise.utils.launch import resolve_device

__all__ = ["LAYOUTS", "MakeCOptions", "class_folder_names", "make_c", "write_c"]

log = logging.getLogger("robustnoise")

LAYOUTS: tuple[str, ...] = ("auto", "npy", "folders")
_MANIFEST = "make_c.json"
_PARTIAL = ".partial"


@dataclass
class MakeCOptions:
    """The options of ``task=make_c`` (``conf/make_c.yaml``; a Hydra structured config: typed, closed)."""

    out_dir: str
    layout: str = "auto"
    corruptions: list[str] | None = None
    severities: list[int] = field(default_factory=lambda: list(SEVERITIES))
    preset: str | None = None
    seed: int = 0
    batch_size: int = 256
    fidelity: bool = True
    num_workers: int = 0
    max_images: int | None = None
    device: str = "cpu"
    overwrite: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS:
            raise ConfigError(f"make_c.layout must be one of {', '.join(LAYOUTS)}, got {self.layout!r}")
        if self.batch_size < 1:
            raise ConfigError(f"make_c.batch_size must be >= 1, got {self.batch_size}")
        if self.max_images is not None and self.max_images < 1:
            raise ConfigError(f"make_c.max_images must be >= 1 or null, got {self.max_images}")


def make_c(cfg: Mapping[str, Any] | Any, datamodule: Any) -> dict[str, Any]:
    """Entry point of ``task=make_c``: write the -C set of ``datamodule``'s test split; returns (and prints) a summary.

    ``cfg``: the ``make_c`` config node (:class:`MakeCOptions`); ``preset: null`` takes the datamodule's
    ``corruption_preset``.
    """
    options = OmegaConf.to_object(OmegaConf.merge(MakeCOptions, cfg))  # unknown keys and wrong types refused
    options.preset = options.preset or getattr(datamodule, "corruption_preset", None) or "imagenet"
    summary = write_c(
        datamodule.test_dataset(options.max_images),
        options,
        num_classes=int(getattr(datamodule, "num_classes", 0)) or None,
        class_names=class_folder_names(datamodule),
        source=getattr(datamodule, "name", type(datamodule).__name__),
    )
    print(_describe(summary))
    return summary


def write_c(
    dataset: Dataset,
    options: MakeCOptions,
    num_classes: int | None = None,
    class_names: Sequence[str] | None = None,
    source: str = "dataset",
) -> dict[str, Any]:
    """Write the -C set of ``dataset`` (items ``(image, label, ...)``; image ``i`` is seeded as test index ``i``).

    ``class_names``: folder names for the folder layout (used only if they sort in label order, see
    :func:`usable_class_names`); ``options.max_images`` is the caller's (:func:`make_c` passes the split it asks for).
    """
    preset = options.preset or "imagenet"
    names, levels = resolve_sets(options.corruptions, tuple(options.severities), preset)
    num_images = len(dataset)  # type: ignore[arg-type]
    if num_images == 0:
        raise ConfigError("the test split is empty: nothing to write")
    first = to_float_image(dataset[0][0])
    if first.dim() != 3:
        raise ConfigError(f"dataset images must be (C, H, W), got shape {tuple(first.shape)}")
    channels, height, width = first.shape
    layout = options.layout if options.layout != "auto" else "npy" if max(height, width) <= 32 else "folders"
    kind = (
        "folders" if layout == "folders" else "mnistc_npy" if (channels, height, width) == (1, 28, 28) else "cifar_npy"
    )
    if kind == "cifar_npy" and levels != SEVERITIES:
        raise ConfigError(
            f"the npy layout of CIFAR-10-C stores all 5 severities as row blocks, got severities {list(levels)}: "
            "use severities [1, 2, 3, 4, 5] or layout=folders"
        )
    if kind == "folders" and channels not in (1, 3):
        raise ConfigError(f"the JPEG folder layout needs 1 or 3 channels, got {channels}: use layout=npy")
    if num_classes is None:
        num_classes = 1 + max(int(dataset[i][1]) for i in range(num_images))
    folder_names, naming = usable_class_names(class_names, num_classes)

    out = Path(options.out_dir).expanduser()
    prepare_out_dir(out, options.overwrite)
    (out / _MANIFEST).write_text(json.dumps({"complete": False, "source": source}) + "\n")  # lets overwrite clean up
    device = resolve_device(options.device)
    sets = [(c, s) for c in names for s in levels]
    if kind == "folders":
        writer: Any = _FolderWriter(out, sets, num_images, folder_names)
    else:
        writer = _NpyWriter(out, kind == "cifar_npy", sets, (num_images, height, width, channels), num_classes)

    # MNIST-C's released files are rounded; the ImageNet-C family truncates
    quantize = quantize_uint8_truncate if options.fidelity and preset != "mnistc" else quantize_uint8_round
    loader = DataLoader(_FloatImages(dataset), batch_size=options.batch_size, num_workers=options.num_workers)
    start = time.perf_counter()
    total = num_images * len(sets)
    bar = tqdm(total=total, unit="img", desc="make_c", disable=not options.progress, dynamic_ncols=True)
    try:
        for x, y, index in loader:
            x = x.to(device)
            for name, severity in sets:
                seeds = image_seeds(options.seed, index, name, severity).to(device)
                corrupted = corrupt(x, name, severity, preset=preset, seed=seeds)
                writer.write(name, severity, index.numpy(), y.numpy(), quantize(corrupted).cpu())
                bar.update(len(index))
        files = writer.finish()
    except BaseException:
        writer.abort()
        raise
    finally:
        bar.close()
    seconds = time.perf_counter() - start

    summary: dict[str, Any] = {
        "complete": True,
        "out_dir": str(out),
        "layout": kind,
        "source": source,
        "num_images": num_images,
        "image_shape": [channels, height, width],
        "num_classes": num_classes,
        "class_folders": naming if kind == "folders" else None,
        "corruptions": list(names),
        "severities": list(levels),
        "preset": preset,
        "seed": options.seed,
        "fidelity": options.fidelity,
        "files": files,
        "bytes": writer.bytes,
        "seconds": round(seconds, 3),
        "images_per_second": round(total / max(seconds, 1e-9), 1),
        "reader": writer.reader(height, num_classes),
    }
    (out / _MANIFEST).write_text(json.dumps(summary, indent=2) + "\n")
    log.info("make_c: wrote %d files to %s", files, out)
    return summary


def class_folder_names(datamodule: Any) -> list[str] | None:
    """The class names / wnids of a datamodule's test split in label order, if known: ``classes`` / ``class_to_idx``
    of the test set (through wrappers' ``.dataset``) or the datamodule, or a sorted ``root/wnids.txt``."""
    candidates: list[Any] = []
    node = getattr(datamodule, "test_set", None)
    while node is not None and len(candidates) < 8:
        candidates.append(node)
        node = getattr(node, "dataset", None)
    for node in [*candidates, datamodule]:
        classes = getattr(node, "classes", None)
        if isinstance(classes, (list, tuple)) and classes and all(isinstance(c, str) for c in classes):
            return list(classes)
        mapping = getattr(node, "class_to_idx", None)
        if isinstance(mapping, Mapping) and mapping:
            ordered = sorted(mapping, key=lambda k: mapping[k])
            if [mapping[k] for k in ordered] == list(range(len(ordered))):
                return [str(k) for k in ordered]
    root = getattr(datamodule, "root", None)
    if root is not None and (Path(root) / "wnids.txt").is_file():
        return sorted((Path(root) / "wnids.txt").read_text().split())
    return None


def usable_class_names(names: Sequence[str] | None, num_classes: int) -> tuple[list[str], str]:
    """Class folder names for the folder layout and how they were chosen (``classes`` or ``indices``).

    The readers give label = position of the folder in the sorted folder list, so names are used only if they are
    one valid, distinct folder name per class in sorted order; otherwise class ``k`` becomes the zero-padded ``k``.
    """
    if names is not None:
        names = [str(n) for n in names]
        valid = (
            len(names) == num_classes
            and len(set(names)) == len(names)
            and all(n and "/" not in n and os.sep not in n and not n.startswith(".") for n in names)  # not ".", ".."
            and sorted(names) == names
        )
        if valid:
            return names, "classes"
    width = len(str(max(num_classes - 1, 0)))
    return [f"{k:0{width}d}" for k in range(num_classes)], "indices"


def prepare_out_dir(out: Path, overwrite: bool, task: str = "make_c", manifest: str = _MANIFEST) -> None:
    """Make ``out`` empty: a non-empty one only with ``<task>.overwrite=true`` and if ``task`` wrote it."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{task}.out_dir {out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise ConfigError(f"{task}.out_dir {out} is not empty; choose another folder or set {task}.overwrite=true")
        if not (out / manifest).is_file():
            raise ConfigError(
                f"{task}.overwrite: {out} was not written by task={task} ({manifest} missing); not deleting it"
            )
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)


class _FloatImages(Dataset):
    """``(float image, label, index)`` items of a dataset of ``(image, label, ...)``."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[Tensor, int, int]:
        item = self.dataset[index]
        return to_float_image(item[0]), int(item[1]), index


# Writers


MNIST_SEVERITY_FILE = "severity.txt"  # severity of an MNIST-layout root's sets (released MNIST-C: none, i.e. 1)


class _NpyWriter:
    """uint8 image arrays written through ``.partial`` memory maps (renamed when complete) plus label arrays.

    CIFAR-10-C: ``<out>/<corruption>.npy`` (5 N, H, W, C) with severity blocks, ``<out>/labels.npy`` tiled 5 times.
    MNIST-C: ``<root>/<corruption>/test_{images,labels}.npy``, ``root`` = ``<out>`` or, for several severities,
    ``<out>/s<severity>``.
    """

    def __init__(
        self, out: Path, cifar: bool, sets: list[tuple[str, int]], shape: tuple[int, ...], classes: int
    ) -> None:
        """``shape``: (N, H, W, C) of the test split."""
        n = shape[0]
        levels = list(dict.fromkeys(s for _, s in sets))  # in the order asked for
        self.out, self.cifar, self.n, self.bytes = out, cifar, n, 0
        self._arrays: dict[Path, np.memmap] = {}
        self._labels: dict[Path, np.ndarray] = {}
        self.targets: dict[tuple[str, int], tuple[np.memmap, int]] = {}  # (corruption, severity) -> (array, first row)
        self.label_rows = np.zeros(len(SEVERITIES) * n if cifar else n, dtype=np.uint8 if classes <= 256 else np.int64)
        if cifar:
            self._labels[out / "labels.npy"] = self.label_rows
            for name in dict.fromkeys(c for c, _ in sets):
                array = self._open(out / f"{name}.npy", (len(SEVERITIES) * n, *shape[1:]))
                self.targets.update({(name, s): (array, (s - 1) * n) for s in levels})
            return
        self.roots = {s: out if len(levels) == 1 else out / f"s{s}" for s in levels}
        for name, severity in sets:
            folder = self.roots[severity] / name
            self.targets[name, severity] = (self._open(folder / "test_images.npy", shape), 0)
            self._labels[folder / "test_labels.npy"] = self.label_rows
        for severity, root in self.roots.items():  # else the reader keys the sets s1 whatever they were made at
            (root / MNIST_SEVERITY_FILE).write_text(f"{severity}\n")

    def _open(self, path: Path, shape: tuple[int, ...]) -> np.memmap:
        path.parent.mkdir(parents=True, exist_ok=True)
        array = np.lib.format.open_memmap(path.with_name(path.name + _PARTIAL), mode="w+", dtype=np.uint8, shape=shape)
        self._arrays[path] = array
        return array

    def write(self, name: str, severity: int, index: np.ndarray, labels: np.ndarray, pixels: Tensor) -> None:
        array, start = self.targets[name, severity]
        array[start + index] = pixels.permute(0, 2, 3, 1).numpy()
        for block in range(0, len(self.label_rows), self.n):
            self.label_rows[block + index] = labels

    def finish(self) -> int:
        self.targets.clear()
        for path, array in self._arrays.items():
            array.flush()
            os.replace(path.with_name(path.name + _PARTIAL), path)
        for path, labels in self._labels.items():
            np.save(path, labels)
        written = [*self._arrays, *self._labels]
        self._arrays.clear()
        self.bytes = sum(p.stat().st_size for p in written)
        return len(written)

    def abort(self) -> None:
        self.targets.clear()
        for path in list(self._arrays):
            del self._arrays[path]
            path.with_name(path.name + _PARTIAL).unlink(missing_ok=True)

    def reader(self, size: int, num_classes: int) -> dict[str, Any]:
        if self.cifar:
            variant = {10: "cifar10c", 100: "cifar100c"}.get(num_classes, "cifar10c")
            note = "" if size == 32 else "(CifarC reads 32x32x3 images; read other shapes with numpy)"
            return {"kind": variant, "root": str(self.out), "kwargs": {}, "note": note}
        roots = {int(s): str(r) for s, r in self.roots.items()}
        note = "one MNIST-C root per severity" if len(roots) > 1 else ""
        root = roots[min(roots)] if len(roots) == 1 else None
        return {"kind": "mnistc", "root": root, "roots": roots, "kwargs": {}, "note": note}


class _FolderWriter:
    """``<out>/<corruption>/<severity>/<class>/<index>.JPEG`` at quality 85 (torchvision's libjpeg: the bytes Pillow
    writes)."""

    def __init__(self, out: Path, sets: Sequence[tuple[str, int]], num_images: int, class_names: Sequence[str]):
        self.out, self.class_names = out, list(class_names)
        self.files = self.bytes = 0
        self.width = len(str(max(num_images - 1, 0)))
        for name, severity in sets:
            for cls in self.class_names:
                (out / name / str(severity) / cls).mkdir(parents=True, exist_ok=True)

    def write(self, name: str, severity: int, index: np.ndarray, labels: np.ndarray, pixels: Tensor) -> None:
        folder = self.out / name / str(severity)
        for i, label, data in zip(index, labels, encode_jpeg(list(pixels), quality=RELEASE_JPEG_QUALITY)):
            (folder / self.class_names[int(label)] / f"{int(i):0{self.width}d}.JPEG").write_bytes(data.numpy())
            self.bytes += data.numel()
        self.files += len(index)

    def finish(self) -> int:
        return self.files

    def abort(self) -> None:
        pass

    def reader(self, size: int, num_classes: int) -> dict[str, Any]:
        kind = "tinyimagenetc" if (size, num_classes) == (64, 200) else "imagenetc"
        standard = (size, num_classes) in ((64, 200), (224, 1000))
        note = f"read with ImageNetC(root, corruption, severity, image_size={size}, num_classes={num_classes})"
        kwargs = {"image_size": size, "num_classes": num_classes}
        return {"kind": kind, "root": str(self.out), "kwargs": kwargs, "note": "" if standard else note}


def _describe(summary: Mapping[str, Any]) -> str:
    reader, s = summary["reader"], summary
    lines = [
        f"make_c: wrote the {s['layout']} -C set of {s['source']} ({s['num_images']} test images x "
        f"{len(s['corruptions'])} corruptions x {len(s['severities'])} severities, preset {s['preset']}, seed "
        f"{s['seed']}, fidelity {s['fidelity']}): {s['files']} files, {s['bytes'] / 1e6:.1f} MB in {s['seconds']:.1f} "
        f"s ({s['images_per_second']:.0f} images/s)",
        f"  out_dir: {s['out_dir']}",
    ]
    roots = reader.get("roots") or {0: reader["root"]}
    for severity, root in roots.items():
        lines.append(
            f"  {f'severity {severity}: ' if len(roots) > 1 else ''}evaluate with: python run.py task=eval "
            f"eval={reader['kind']} eval.released.root={root} ckpt_path=<your checkpoint>"
        )
    return "\n".join(lines + ([f"  note: {reader['note']}"] if reader.get("note") else []))
