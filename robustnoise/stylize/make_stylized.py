"""``task=stylize``: an AdaIN-stylized copy of a dataset in the Stylized-ImageNet layout ``<out>/<split>/<class>/*.png``
(ref. §5.1: alpha 1, Resize(256) + CenterCrop(224), style seed 49809), options in stylize.json, styles in styles.csv."""

from __future__ import annotations

import copy
import csv
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf
from torch.utils.data import DataLoader, Dataset, Subset
from torchvision.io import write_png
from tqdm.auto import tqdm

from robustnoise.corruptions.digital import quantize_uint8_round
from robustnoise.corruptions.make_c import _FloatImages, class_folder_names, prepare_out_dir, usable_class_names
from robustnoise.stylize.adain import AdaINStylizer
from robustnoise.utils.errors import ConfigError
from robustnoise.utils.launch import resolve_device

SPLITS = ("train", "val", "test")
_MANIFEST = "stylize.json"


@dataclass
class StylizeOptions:
    """The options of ``task=stylize`` (``conf/stylize.yaml``; a Hydra structured config: typed, closed)."""

    out_dir: str
    encoder: str | None = None
    decoder: str | None = None
    style_dir: str | None = None
    splits: list[str] = field(default_factory=lambda: ["train"])
    alpha: float = 1.0
    style_size: int = 224
    max_styles: int | None = None
    seed: int = 49809
    batch_size: int = 32
    num_workers: int = 0
    max_images: int | None = None
    device: str = "auto"
    overwrite: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        if missing := [f"stylize.{k}" for k in ("encoder", "decoder", "style_dir") if not getattr(self, k)]:
            raise ConfigError(
                f"task=stylize needs {', '.join(missing)} (vgg_normalised.pth, decoder.pth, a folder of paintings)"
            )
        if not self.splits or any(s not in SPLITS for s in self.splits):
            raise ConfigError(f"stylize.splits must be a non-empty subset of {', '.join(SPLITS)}, got {self.splits}")
        if not 0.0 <= self.alpha <= 1.0:
            raise ConfigError(f"stylize.alpha must be in [0, 1], got {self.alpha}")
        if self.batch_size < 1:
            raise ConfigError(f"stylize.batch_size must be >= 1, got {self.batch_size}")


def make_stylized(cfg: Mapping[str, Any] | Any, datamodule: Any) -> dict[str, Any]:
    """Entry point of ``task=stylize``: write the stylized splits of ``datamodule``; returns (and prints) a summary."""
    options = OmegaConf.to_object(OmegaConf.merge(StylizeOptions, cfg))  # unknown keys and wrong types refused
    device = resolve_device(options.device)
    out = Path(options.out_dir)
    prepare_out_dir(out, options.overwrite, "stylize", _MANIFEST)
    stylizer = AdaINStylizer.from_files(options.encoder, options.decoder).to(device)  # type: ignore[arg-type]
    files = stylizer.load_style_folder(options.style_dir, options.style_size, options.max_styles, options.batch_size)
    datamodule.setup("fit")  # every split of the robustnoise DataModules
    class_names, naming = usable_class_names(class_folder_names(datamodule), int(datamodule.num_classes))
    summary: dict[str, Any] = {
        "out_dir": str(out),
        "layout": "<out>/<split>/<class>/<name>.png",
        "class_folders": naming,
        "num_styles": len(files),
        "splits": {},
        "options": {k: v for k, v in asdict(options).items() if k != "progress"},
    }
    assignments: list[tuple[str, int]] = []
    style_names = [str(p.relative_to(options.style_dir)) for p in files]  # type: ignore[arg-type]
    for split in options.splits:
        dataset = getattr(datamodule, f"{split}_set", None)
        if dataset is None:
            raise ConfigError(f"{getattr(datamodule, 'name', 'the dataset')} has no {split} split")
        written = stylize_split(stylizer, _deterministic(dataset, datamodule), out, split, class_names, options)
        summary["splits"][split] = len(written)
        assignments += written
    with open(out / "styles.csv", "w", newline="") as handle:
        csv.writer(handle).writerows([("image", "style"), *((image, style_names[s]) for image, s in assignments)])
    (out / _MANIFEST).write_text(json.dumps(summary, indent=2))
    print(f"stylized {sum(summary['splits'].values())} images with {len(files)} styles -> {out}")
    return summary


def stylize_split(
    stylizer: AdaINStylizer, dataset: Dataset, out: Path, split: str, class_names: list[str], options: StylizeOptions
) -> list[tuple[str, int]]:
    """Stylize ``dataset`` into ``out/<split>/<class>/<name>.png``, image ``i`` with the ``i``-th style drawn."""
    if options.max_images is not None and options.max_images < len(dataset):  # type: ignore[arg-type]
        dataset = Subset(dataset, range(options.max_images))
    count = len(dataset)  # type: ignore[arg-type]
    names = _sample_names(dataset, count)
    styles = torch.randint(stylizer.num_styles, (count,), generator=torch.Generator().manual_seed(options.seed))
    loader = DataLoader(_FloatImages(dataset), batch_size=options.batch_size, num_workers=options.num_workers)
    written, folders = [], set()
    for x, y, index in tqdm(loader, desc=f"stylize {split}", disable=not options.progress):
        pixels = quantize_uint8_round(stylizer(x, alpha=options.alpha, style_index=styles[index]))  # as save_image
        for pixel, label, i in zip(pixels.cpu(), y.tolist(), index.tolist(), strict=True):
            name = f"{split}/{class_names[label]}/{names[i]}.png"
            if (folder := (out / name).parent) not in folders:  # one mkdir per class folder, not per image
                folder.mkdir(parents=True, exist_ok=True)
                folders.add(folder)
            write_png(pixel, str(out / name))
            written.append((name, int(styles[i])))
    return written


def _deterministic(dataset: Any, datamodule: Any) -> Any:
    """A copy of ``dataset`` with the datamodule's ``eval_transform`` (SIN content: Resize(256) + CenterCrop(224))."""
    make = getattr(datamodule, "eval_transform", None)
    if callable(make) and hasattr(dataset, "transform"):
        dataset = copy.copy(dataset)
        dataset.transform = make()
    elif hasattr(dataset, "dataset"):  # a Subset
        dataset = copy.copy(dataset)
        dataset.dataset = _deterministic(dataset.dataset, datamodule)
    return dataset


def _sample_names(dataset: Any, count: int) -> list[str]:
    """File stems of a folder dataset (through ``Subset``s) when unique, else zero-padded positions."""
    indices: list[int] = list(range(count))
    while isinstance(dataset, Subset):
        indices, dataset = [int(dataset.indices[i]) for i in indices], dataset.dataset
    if samples := getattr(dataset, "samples", None):  # a folder dataset's (path, label) pairs
        stems = [Path(str(samples[i][0])).stem for i in indices]
        if len(set(stems)) == count:
            return stems
    width = len(str(max(count - 1, 0)))
    return [f"{i:0{width}d}" for i in range(count)]
