"""DataModules: the embedded digits, and one clear error line for a missing dataset."""

from __future__ import annotations

import pytest
import torch

from robustnoise.data import (
    CIFAR10DataModule,
    CIFAR100DataModule,
    DigitsDataModule,
    ImageNetDataModule,
    MNISTDataModule,
    TinyImageNetDataModule,
)
from robustnoise.utils.errors import DatasetNotFoundError


def test_digits_split_is_fixed_stratified_and_in_unit_range():
    dm = DigitsDataModule(image_size=28)
    dm.setup()
    sizes = [len(dm.train_set), len(dm.val_set), len(dm.test_set)]
    assert sum(sizes) == 1797 and sizes[2] == 360
    x, y = dm.test_set.tensors
    assert x.shape[1:] == (1, 28, 28) and x.min() >= 0 and x.max() <= 1 and x.max() > 0.9
    assert torch.bincount(y, minlength=10).min() >= 35  # stratified: every class ~36 times
    again = DigitsDataModule(image_size=28)
    again.setup()
    assert torch.equal(again.test_set.tensors[1], y)  # the split does not change between runs
    train_x = dm.train_set.tensors[0]
    assert not (train_x.flatten(1)[:, None] == x.flatten(1)[None, :200]).all(-1).any()  # no test image in train


def test_test_batches_carry_dataset_indices():
    dm = DigitsDataModule(eval_batch_size=100)
    x, y, index = next(iter(dm.test_dataloader()))
    assert torch.equal(index, torch.arange(100))
    assert torch.equal(y, dm.test_set.tensors[1][:100])
    assert len(dm.test_dataset(max_images=50)) == 50


@pytest.mark.parametrize(
    ("cls", "kwargs", "layout_hint"),
    [
        (MNISTDataModule, {}, "MNIST/raw"),
        (CIFAR10DataModule, {}, "cifar-10-batches-py"),
        (CIFAR100DataModule, {}, "cifar-100-python"),
        (ImageNetDataModule, {}, "<root>/train/<wnid>"),
        (TinyImageNetDataModule, {}, "val_annotations.txt"),
    ],
)
def test_missing_dataset_is_one_line_naming_path_and_layout(tmp_path, cls, kwargs, layout_hint):
    root = tmp_path / "nowhere"
    dm = cls(root=str(root), **kwargs)
    with pytest.raises(DatasetNotFoundError) as info:
        dm.setup("fit")
    message = str(info.value)
    assert "\n" not in message
    assert str(root) in message and layout_hint in message and "expected layout" in message


def test_imagenet_folders_use_sorted_wnids_and_center_crop(tmp_path):
    from PIL import Image

    for split in ("train", "val"):
        for wnid in ("n02", "n01"):
            folder = tmp_path / split / wnid
            folder.mkdir(parents=True)
            Image.new("RGB", (300, 260), (200, 10, 10)).save(folder / "a.JPEG")
    dm = ImageNetDataModule(root=str(tmp_path), val_subset=None)
    dm.setup("test")
    assert dm.train_set is None
    dm.setup("fit")  # after the test split (task=eval's adversarial generators train on the training split)
    assert len(dm.train_set) == 2
    image, label = dm.test_set[0]
    assert image.shape == (3, 224, 224) and image.dtype == torch.float32 and 0 <= image.min() <= image.max() <= 1
    assert dm.test_set.class_to_idx == {"n01": 0, "n02": 1}


def test_tiny_imagenet_info_matches_its_released_c_set():
    from robustnoise.data.released_c import check_matches_clean

    tiny, imagenet = TinyImageNetDataModule(root="unused").info(), ImageNetDataModule(root="unused").info()
    assert (tiny["image_size"], imagenet["image_size"], ImageNetDataModule(image_size=299).image_size) == (64, 224, 299)
    check_matches_clean("tinyimagenetc", "tiny_imagenet", tiny["num_classes"], tiny["in_chans"], tiny["image_size"])


def test_imagenet_class_mismatch_leaves_no_half_set_up_module(tmp_path):
    from PIL import Image

    for split, wnids in (("train", ("n01", "n03")), ("val", ("n01", "n02"))):
        for wnid in wnids:
            (tmp_path / split / wnid).mkdir(parents=True)
            Image.new("RGB", (40, 40)).save(tmp_path / split / wnid / "a.JPEG")
    dm = ImageNetDataModule(root=str(tmp_path), val_subset=None)
    for _ in range(2):  # a retry fails the same way instead of silently running without a training set
        with pytest.raises(DatasetNotFoundError, match="not those of the val split"):
            dm.setup("fit")
        assert dm.train_set is None and dm.test_set is None
