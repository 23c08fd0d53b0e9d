"""Stylized images paired with a clean DataModule (ANT+SIN; Geirhos et al. 2019): training batches ``{"clean": (x, y),
"stylized": (x_s, y_s)}``. ``source=folder`` (as the papers): pre-stylized ``<stylized_root>/train/<class>/*`` (from
``task=stylize``); ``source=adain``: the clean training set stylized on the device, a random painting per image."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from pytorch_lightning.utilities import CombinedLoader

from robustnoise.data.base import ClassificationDataModule, WrappedDataModule
from robustnoise.utils.errors import CheckpointError, ConfigError
from robustnoise.utils.seeding import derive_seed, run_seed


class StylizedDataModule(WrappedDataModule):
    """A clean DataModule plus stylized images of the same classes, zipped batch by batch (as the reference)."""

    name = "stylized"
    layout = "<stylized_root>/train/<class>/*.{JPEG,png} with the clean training set's class folders"

    def __init__(
        self,
        clean: ClassificationDataModule,
        stylized_root: str | None = None,
        stylized_batch_size: int | None = None,
        source: str = "folder",
        encoder: str | None = None,
        decoder: str | None = None,
        style_dir: str | None = None,
        alpha: float = 1.0,
        style_size: int = 224,
        max_styles: int | None = None,
        style_seed: int = 0,
        **wrapped: Any,
    ) -> None:
        super().__init__(clean, **wrapped)
        if source not in ("folder", "adain"):
            raise ConfigError(f"data.source must be one of folder, adain, got {source!r}")
        if source == "folder" and not stylized_root:
            raise ConfigError("data.source=folder needs data.stylized_root=<folder with train/<class>/*>")
        if source == "adain" and not (encoder and decoder and style_dir):
            raise ConfigError("data.source=adain needs data.encoder, data.decoder and data.style_dir")
        if not 0.0 <= float(alpha) <= 1.0:
            raise ConfigError(f"data.alpha (AdaIN style strength) must be in [0, 1], got {alpha}")
        self.source, self.alpha, self.style_seed = source, float(alpha), int(style_seed)
        self.stylized_root = Path(stylized_root) if stylized_root else None
        self.stylized_batch_size = stylized_batch_size or clean.batch_size
        self.weights = (encoder, decoder)  # AdaIN's vgg_normalised.pth and decoder.pth
        self.style_options = {"style_dir": style_dir, "size": int(style_size), "max_styles": max_styles}
        self.name = f"{clean.name}+stylized"
        self.stylized_set: Any = None
        self.stylizer: Any = None

    def setup(self, stage: str | None = None) -> None:
        super().setup(stage)
        if self.stylized_set is not None or stage not in (None, "fit"):
            return
        if self.source == "adain":
            from robustnoise.stylize.adain import AdaINStylizer, style_files

            if absent := [str(path) for path in self.weights if not Path(str(path)).is_file()]:
                raise CheckpointError(
                    f"AdaIN weights not found: {', '.join(absent)}; expected data.encoder=<vgg_normalised.pth> "
                    "and data.decoder=<decoder.pth> (naoto0804/pytorch-AdaIN release)"
                )
            style_files(str(self.style_options["style_dir"]))  # fail now, not at the first batch
            self.stylizer = AdaINStylizer.from_files(*self.weights)  # on the CPU, moved to the device with the batches
            self.stylized_set = self.clean.train_set  # clean images, stylized on the device after transfer
            return
        folder = self.stylized_root / "train"
        self.stylized_set = self.image_folder(folder)
        if len(self.stylized_set.classes) != self.num_classes:
            raise self.not_found(folder, f"{len(self.stylized_set.classes)} class folders, expected {self.num_classes}")

    def train_dataloader(self) -> Any:
        # its own order and position, restored on a mid-epoch resume as the clean one's
        seed = derive_seed(run_seed(), "stylized_order")
        stylized = self.resumable_loader(self.stylized_set, self.stylized_batch_size, seed, drop_last=True)
        return CombinedLoader({"clean": self.clean.train_dataloader(), "stylized": stylized}, mode="min_size")

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """``source=adain``: stylize the ``"stylized"`` part of a training batch on its device."""
        if self.source != "adain" or not isinstance(batch, dict) or "stylized" not in batch:
            return batch
        x, y = batch["stylized"][0], batch["stylized"][1]
        if self.stylizer.num_styles == 0:  # once, on the training device (the encoder is the expensive part)
            self.stylizer.to(x.device).load_style_folder(**self.style_options)
        # style picks as a function of (style_seed, rank, training step): reproducible, resumable, per-rank
        rank, step = (self.trainer.global_rank, self.trainer.global_step) if self.trainer is not None else (0, 0)
        generator = torch.Generator().manual_seed(derive_seed(self.style_seed, "adain_styles", rank, step))
        return {**batch, "stylized": (self.stylizer(x, generator=generator, alpha=self.alpha), y)}
