"""Extra training sources (DeepAugment-processed copies drawn with the clean set; AdA App. A)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from robustnoise.data import DigitsDataModule
from robustnoise.data.extra_source import ExtraSourceDataModule, folder_label_map
from robustnoise.utils.errors import DatasetNotFoundError
from robustnoise.utils.instantiate import instantiate

from .conftest import compose_config


def _write_folder(root: Path, names: list[str], per_class: int, size: int, value: int) -> None:
    """``per_class`` flat grey images of ``size`` px per class folder; pixel value ``value + class position``."""
    for position, name in enumerate(names):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.new("L", (size, size), color=value + position).save(root / name / f"{i}.png")


def test_train_set_is_the_union_and_labels_map_to_the_clean_classes(tmp_path):
    _write_folder(tmp_path / "edsr", [str(c) for c in range(10)], per_class=2, size=112, value=100)
    _write_folder(tmp_path / "cae" / "train", [f"{c:02d}" for c in range(10)], per_class=1, size=28, value=200)
    clean = DigitsDataModule(batch_size=16)
    dm = ExtraSourceDataModule(clean, [str(tmp_path / "edsr"), str(tmp_path / "cae")])
    dm.setup("fit")
    n_clean = len(clean.train_set)
    assert len(dm.train_set) == n_clean + 20 + 10
    assert dm.val_set is clean.val_set and dm.test_set is clean.test_set
    for index in range(n_clean, n_clean + 30):
        image, label = dm.train_set[index]
        assert image.shape == (1, 28, 28) and image.dtype == torch.float32  # 112 px resized to the clean size
        base = 100 if index < n_clean + 20 else 200
        assert round(float(image.mean()) * 255) == base + label  # the folder's class, read from the pixels
    image, label = dm.train_set[0]
    assert torch.equal(image, clean.train_set[0][0]) and label == int(clean.train_set[0][1])
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (16, 1, 28, 28) and y.dtype == torch.long
    assert dm.info() == clean.info() and dm.name == "digits+extra"


def test_label_map_by_name_follows_the_clean_order_not_the_folder_sort():
    assert folder_label_map(["cat", "dog"], ["dog", "cat"], 2) == {"cat": 1, "dog": 0}
    assert folder_label_map(["00", "01", "02"], None, 3) == {"00": 0, "01": 1, "02": 2}
    with pytest.raises(DatasetNotFoundError, match=r"found 2 \(0, 1\); expected indices 0..2"):
        folder_label_map(["0", "1"], None, 3)


def test_class_folder_mismatch_is_a_one_line_error(tmp_path):
    _write_folder(tmp_path / "bad", ["a", "b", "c"], per_class=1, size=8, value=0)
    dm = ExtraSourceDataModule(DigitsDataModule(), [str(tmp_path / "bad")])
    with pytest.raises(DatasetNotFoundError, match="class folders do not match") as err:
        dm.setup("fit")
    assert "\n" not in str(err.value) and str(tmp_path / "bad") in str(err.value)
    with pytest.raises(DatasetNotFoundError, match="not found at"):
        ExtraSourceDataModule(DigitsDataModule(), [str(tmp_path / "missing")]).setup("fit")


def test_deepaugment_config_wraps_the_clean_data(tmp_path):
    _write_folder(tmp_path / "edsr", [str(c) for c in range(10)], per_class=1, size=56, value=10)
    cfg = compose_config(["data=deepaugment", f"data.roots=[{tmp_path / 'edsr'}]", "data.clean.batch_size=8"], tmp_path)
    dm = instantiate(cfg.data)
    assert isinstance(dm, ExtraSourceDataModule) and dm.resize == 28 and dm.batch_size == 8
    dm.setup("fit")
    assert len(dm.train_set) == len(dm.clean.train_set) + 10
