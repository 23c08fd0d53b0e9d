"""The user-facing corruption API: ``Corrupt`` / ``RandomCorrupt`` transforms, ``CorruptedDataset`` and ``make_c``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf.errors import ConfigKeyError
from PIL import Image
from torch.utils.data import DataLoader, TensorDataset
from torchvision import tv_tensors
from torchvision.transforms import v2

from robustnoise.corruptions import (
    ALL_CORRUPTIONS,
    CORRUPTION_FNS,
    Corrupt,
    CorruptedDataset,
    RandomCorrupt,
    corrupt,
    corruption_id,
    sample_seeds,
)
from robustnoise.corruptions.digital import quantize_uint8_round
from robustnoise.corruptions.fidelity import quantize_uint8_truncate, release_fidelity
from robustnoise.corruptions.make_c import MakeCOptions, usable_class_names, write_c
from robustnoise.data import ClassificationDataModule, DigitsDataModule
from robustnoise.data.released_c import CifarC, ImageNetC, MnistC, released_c_sets
from robustnoise.eval.suite import CorruptionSuite, EvalSet
from robustnoise.train import run
from robustnoise.utils.errors import ConfigError, RobustnoiseError
from tests.conftest import assert_images_close, assert_quantized_close, compose_config

REGISTERED = [name for name in ALL_CORRUPTIONS if name in CORRUPTION_FNS]
CHEAP = [n for n in ("gaussian_noise", "defocus_blur", "frost", "contrast", "pixelate") if n in CORRUPTION_FNS]


@pytest.fixture(scope="module")
def test_split():
    """The first 10 images of the digits test split, as (image, label, index) items, and as one batch."""
    dataset = DigitsDataModule().test_dataset(10)
    x, y, index = next(iter(DataLoader(dataset, batch_size=len(dataset))))
    return dataset, x, y, index


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 -> float32 like the data pipelines and the released-set readers."""
    return v2.functional.to_dtype(images.as_subclass(torch.Tensor), torch.float32, scale=True)


# ---------------------------------------------------------------------------------------------------------------------
# Corrupt / RandomCorrupt


@pytest.mark.exact  # gaussian_noise: counter-based draws and elementwise arithmetic, exact at any batch shape
def test_corrupt_transform_equals_corrupt_for_images_and_batches():
    x = torch.rand(5, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    t = Corrupt("gaussian_noise", 3, preset="cifar", seed=7)
    expected = corrupt(x, "gaussian_noise", 3, preset="cifar", seed=7)
    assert torch.equal(t(x), expected)
    assert torch.equal(t(x), t(x))  # deterministic
    assert torch.equal(t(x[0]), expected[0])  # a single image is index 0
    # with the dataset index, an image's corruption does not depend on its batch or position
    assert torch.equal(t(x[3], index=3), expected[3])
    perm = torch.tensor([4, 0, 3])
    assert torch.equal(t(x[perm], index=perm), expected[perm])
    assert not torch.equal(Corrupt("gaussian_noise", 3, preset="cifar", seed=8)(x), expected)


def test_corrupt_transform_types_and_passthrough():
    x = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(1))
    t = Corrupt("contrast", 2, preset="cifar")
    image8 = tv_tensors.Image((x * 255).to(torch.uint8))
    mask = tv_tensors.Mask(torch.ones(32, 32, dtype=torch.uint8))
    out, label, out_mask = t(image8, 4, mask)
    assert isinstance(out, tv_tensors.Image) and out.dtype == torch.uint8 and label == 4 and out_mask is mask
    ref = corrupt(to_float(image8.as_subclass(torch.Tensor))[None], "contrast", 2, preset="cifar")[0]
    assert torch.equal(out.as_subclass(torch.Tensor), quantize_uint8_truncate(ref))  # np.uint8 semantics
    pil = Image.fromarray(image8.permute(1, 2, 0).numpy())
    out_pil = t(pil)
    assert isinstance(out_pil, Image.Image) and out_pil.mode == "RGB"
    assert np.array_equal(np.asarray(out_pil), out.permute(1, 2, 0).numpy())
    composed = v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True), t])
    assert torch.equal(composed(pil), t(to_float(image8)))
    with pytest.raises(RobustnoiseError):
        Corrupt("fog_of_war", 1)
    with pytest.raises(RobustnoiseError):
        Corrupt("fog", 6)
    with pytest.raises(RobustnoiseError):
        Corrupt("fog", 1, preset="mnist")
    with pytest.raises(RobustnoiseError, match="index has 1 entries for 2"):
        t(torch.rand(2, 3, 8, 8), index=0)


def test_random_corrupt_draws_per_call_reproducibly():
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    choices = [("gaussian_noise", 1), ("gaussian_noise", 5), ("contrast", 1), ("contrast", 5)]
    candidates = [corrupt(x, c, s, preset="cifar", seed=0) for c, s in choices]
    first = RandomCorrupt(["gaussian_noise", "contrast"], [1, 5], preset="cifar", seed=3)
    second = RandomCorrupt(["gaussian_noise", "contrast"], [1, 5], preset="cifar", seed=3)
    outs = [first(x) for _ in range(12)]
    assert all(torch.equal(a, second(x)) for a in outs)  # same seed: same sequence
    assert len({o.sum().item() for o in outs}) > 1  # different calls draw different corruptions / seeds
    contrast = [o for o in outs if any(torch.equal(o, c) for c in candidates[2:])]  # contrast is deterministic
    assert contrast and len(contrast) < len(outs)
    # seed=None: torch's global RNG
    torch.manual_seed(11)
    a = RandomCorrupt(["gaussian_noise", "contrast"], preset="cifar")(x)
    torch.manual_seed(11)
    b = RandomCorrupt(["gaussian_noise", "contrast"], preset="cifar")(x)
    assert torch.equal(a, b)


# ---------------------------------------------------------------------------------------------------------------------
# CorruptedDataset


def test_corrupted_dataset_order_and_accessors(test_split):
    dataset, x, y, _ = test_split
    cd = CorruptedDataset(dataset, corruptions=["gaussian_noise", "contrast"], severities=[2, 4], seed=5)
    n = len(dataset)
    assert len(cd) == 4 * n
    assert cd.sets == [("gaussian_noise", 2), ("gaussian_noise", 4), ("contrast", 2), ("contrast", 4)]
    assert cd.index_of("contrast", 2, 3) == 2 * n + 3 and cd.locate(2 * n + 3) == ("contrast", 2, 3)
    assert all(cd.locate(cd.index_of(c, s, i)) == (c, s, i) for c, s in cd.sets for i in range(n))
    image, label = cd[cd.index_of("gaussian_noise", 4, 7)]
    assert label == int(y[7]) and image.shape == x[7].shape
    with pytest.raises(RobustnoiseError):
        cd.index_of("fog", 2, 0)
    with pytest.raises(IndexError):
        cd[len(cd)]
    assert [(c, s, len(d)) for c, s, d in cd.as_sets()] == [(c, s, n) for c, s in cd.sets]
    everything = CorruptedDataset(dataset)
    assert everything.corruptions == tuple(REGISTERED) and everything.severities == (1, 2, 3, 4, 5)


def test_corrupted_dataset_equals_evaluation_and_transform(test_split):
    """The same image gets the same corruption in CorruptionSuite, CorruptedDataset (item by item and batched) and
    Corrupt(index=i), for every registered corruption."""
    dataset, x, _, index = test_split
    severities = [1, 5]
    cd = CorruptedDataset(dataset, corruptions=REGISTERED, severities=severities, seed=9)
    suite = CorruptionSuite(dataset, REGISTERED, severities, preset="imagenet", seed=9)
    for name, severity in cd.sets:
        expected = suite.corrupted(EvalSet(name, severity), x, index)
        single = torch.stack([cd[cd.index_of(name, severity, i)][0] for i in (0, 6)])
        assert_images_close(single, expected[[0, 6]], (name, severity))  # batch shapes differ: float rounding
        items = cd.__getitems__([cd.index_of(name, severity, i) for i in range(len(dataset))])
        assert_images_close(torch.stack([im for im, _ in items]), expected, (name, severity))
        transform = Corrupt(name, severity, seed=9)
        assert_images_close(transform(x[4], index=4), expected[4], (name, severity))


def test_corrupted_dataset_loader_and_fidelity(test_split):
    dataset, x, y, index = test_split
    cd = CorruptedDataset(dataset, corruptions=CHEAP, severities=[3], seed=1, fidelity=True)
    batches = list(DataLoader(cd, batch_size=7, shuffle=False))  # batches straddle sets: grouped per set
    images = torch.cat([b[0] for b in batches])
    labels = torch.cat([b[1] for b in batches])
    for k, name in enumerate(CHEAP):
        seeds = sample_seeds(1, index, corruption_id(name), 3)
        expected = release_fidelity(corrupt(x, name, 3, seed=seeds), "imagenet")
        assert_quantized_close(images[k * len(dataset) : (k + 1) * len(dataset)], expected, 8, 0.02, name)  # JPEG
        assert torch.equal(labels[k * len(dataset) : (k + 1) * len(dataset)], y)
    assert torch.equal(images * 255, (images * 255).round())  # on the uint8 grid


# ---------------------------------------------------------------------------------------------------------------------
# make_c


def expected_c(x: torch.Tensor, index: torch.Tensor, name: str, severity: int, seed: int) -> torch.Tensor:
    """What the in-memory evaluation computes for the set, truncated to uint8 like the released files."""
    suite = CorruptionSuite(TensorDataset(x), [name], [severity], seed=seed)
    return quantize_uint8_truncate(suite.corrupted(EvalSet(name, severity), x, index))


def test_make_c_mnist_npy_layout_round_trips(tmp_path, test_split):
    _, x, y, index = test_split
    names = CHEAP[:3]
    cfg = compose_config(
        [
            "task=make_c",
            "make_c.max_images=10",
            "make_c.layout=npy",
            f"make_c.corruptions=[{','.join(names)}]",
            "make_c.severities=[2,5]",
            "make_c.seed=4",
            "make_c.batch_size=4",
            "make_c.progress=false",
        ],
        tmp_path,
    )
    summary = run(cfg)
    out = Path(summary["out_dir"])
    assert summary["layout"] == "mnistc_npy" and summary["files"] == 2 * len(names) * 2
    assert json.loads((out / "make_c.json").read_text())["seed"] == 4
    for severity in (2, 5):
        root = out / f"s{severity}"
        sets = released_c_sets("mnistc", root)
        assert [c for c, _, _ in sets] == names
        assert {s for _, s, _ in sets} == {severity}  # not s1: the sets are at the severity they were made at
        assert {ds.key for _, _, ds in sets} == {f"{n}/s{severity}" for n in names}
        for name, _, ds in sets:
            assert isinstance(ds, MnistC) and len(ds) == len(x)
            raw = np.load(root / name / "test_images.npy")
            assert raw.dtype == np.uint8 and raw.shape == (len(x), 28, 28, 1)
            expected = expected_c(x, index, name, severity, seed=4)
            assert_quantized_close(raw[..., 0], expected[:, 0], msg=(name, severity))  # written in batches of 4
            image, label = ds[3]
            assert label == int(y[3])
            assert_quantized_close(image, to_float(expected[3]))


def test_make_c_folder_layout_round_trips(tmp_path, test_split):
    _, x, y, index = test_split
    names = CHEAP[:2]
    cfg = compose_config(
        [
            "task=make_c",
            "make_c.max_images=10",
            "make_c.layout=folders",
            f"make_c.corruptions=[{','.join(names)}]",
            "make_c.severities=[3]",
            "make_c.progress=false",
            f"make_c.out_dir={tmp_path / 'digits-C'}",
        ],
        tmp_path,
    )
    summary = run(cfg)
    assert summary["layout"] == "folders" and summary["class_folders"] == "indices"
    assert sorted(p.name for p in (tmp_path / "digits-C" / names[0] / "3").iterdir()) == [str(k) for k in range(10)]
    reader = summary["reader"]
    for name in names:
        ds = ImageNetC(reader["root"], name, 3, **reader["kwargs"])
        assert len(ds) == len(x)
        clean = expected_c(x, index, name, 3, seed=0)
        decoded = torch.zeros_like(x)
        for path, label in ds.samples:
            i = int(Path(path).stem)
            assert label == int(y[i])
            image, _ = ds[ds.samples.index((path, label))]
            assert image.shape == (3, 28, 28) and torch.equal(image[0], image[2])  # greyscale JPEG, read as RGB
            decoded[i] = image[:1]
        # the JPEG q85 files are the truncated images after the release JPEG round trip (the files were written in
        # other batch shapes: up to a level flipped by float rounding, spread over its 8x8 block by the JPEG)...
        rel = release_fidelity(to_float(clean), "imagenet")
        assert_quantized_close((decoded * 255).round() / 255, (rel * 255).round() / 255, 8, 0.02, name)
        # ... i.e. the evaluation's images within JPEG error
        assert (decoded - to_float(clean)).abs().mean() < 0.03


class _RGB32(ClassificationDataModule):
    """12 random 32 px colour images, 10 classes (a stand-in for CIFAR-10)."""

    name, num_classes, in_chans, image_size, mean, std = "rgb32", 10, 3, 32, (0.5,) * 3, (0.25,) * 3

    def setup(self, stage=None):
        gen = torch.Generator().manual_seed(0)
        images = torch.rand(12, 3, 32, 32, generator=gen)
        self.test_set = TensorDataset(images, torch.arange(12) % 10)
        self.test_set.classes = [f"class_{k}" for k in range(10)]


def test_make_c_cifar_npy_layout_round_trips(tmp_path):
    from robustnoise.corruptions.make_c import make_c

    dm = _RGB32(corruption_preset="cifar")
    summary = make_c({"out_dir": str(tmp_path / "C"), "corruptions": ["gaussian_noise"], "progress": False}, dm)
    assert summary["layout"] == "cifar_npy" and summary["preset"] == "cifar" and summary["reader"]["kind"] == "cifar10c"
    images = np.load(tmp_path / "C" / "gaussian_noise.npy")
    labels = np.load(tmp_path / "C" / "labels.npy")
    assert images.shape == (60, 32, 32, 3) and images.dtype == np.uint8 and labels.dtype == np.uint8
    x, y = dm.test_set.tensors
    assert np.array_equal(labels, np.tile(y.numpy(), 5))
    for severity in (1, 4):
        ds = CifarC(tmp_path / "C", "gaussian_noise", severity, variant="cifar10")
        expected = quantize_uint8_truncate(
            corrupt(x, "gaussian_noise", severity, "cifar", sample_seeds(0, torch.arange(12), 0, severity))
        )
        assert torch.equal(torch.stack([ds[i][0] for i in range(12)]), to_float(expected))
        assert [ds[i][1] for i in range(12)] == y.tolist()
    # folder layout: class folders named after the dataset's classes; a non-empty out_dir is refused
    folders = make_c(
        {"out_dir": str(tmp_path / "F"), "layout": "folders", "corruptions": ["contrast"], "severities": [1]}, dm
    )
    assert folders["class_folders"] == "classes"
    assert sorted(p.name for p in (tmp_path / "F" / "contrast" / "1").iterdir()) == dm.test_set.classes
    with pytest.raises(ConfigError, match="not empty"):
        make_c({"out_dir": str(tmp_path / "F"), "layout": "folders", "corruptions": ["contrast"]}, dm)
    again = {"out_dir": str(tmp_path / "F"), "layout": "folders", "corruptions": ["fog"], "severities": [2]}
    assert make_c({**again, "overwrite": True, "progress": False}, dm)["files"] == 12  # replaces its own output
    assert sorted(p.name for p in (tmp_path / "F").iterdir()) == ["fog", "make_c.json"]
    with pytest.raises(ConfigError, match="all 5 severities"):
        make_c({"out_dir": str(tmp_path / "G"), "corruptions": ["contrast"], "severities": [1, 2]}, dm)
    with pytest.raises(ConfigKeyError, match="Key 'severity' not in 'MakeCOptions'"):  # typed options: no typo passes
        make_c({"out_dir": str(tmp_path / "G"), "severity": 1}, dm)


def test_class_folder_names_must_sort_in_label_order():
    assert usable_class_names(["n01", "n02"], 2) == (["n01", "n02"], "classes")
    assert usable_class_names(["cat", "ant"], 2) == (["0", "1"], "indices")  # sorted order != label order
    assert usable_class_names(["a/b", "c"], 2)[1] == "indices"
    assert usable_class_names(None, 12)[0][:3] == ["00", "01", "02"]
    with pytest.raises(ConfigError):
        write_c(TensorDataset(torch.rand(2, 3, 8, 8), torch.zeros(2)), MakeCOptions("/nonexistent", layout="jpeg"))


def test_mnistc_preset_through_dataset_transform_and_make_c(tmp_path, test_split):
    dataset, x, y, _ = test_split
    names = ["shear", "stripe"]
    cd = CorruptedDataset(dataset, corruptions=names, preset="mnistc", fidelity=True)
    assert cd.severities == (1,) and cd.sets == [("shear", 1), ("stripe", 1)]
    for name in names:
        expected = release_fidelity(corrupt(x, name, 1, preset="mnistc", seed=0), "mnistc")
        assert_quantized_close(torch.stack([cd[cd.index_of(name, 1, i)][0] for i in range(len(x))]), expected)
        assert_quantized_close(
            release_fidelity(Corrupt(name, 1, preset="mnistc")(x[5], index=5)[None], "mnistc")[0], expected[5]
        )
    with pytest.raises(ConfigError, match="one fixed severity"):
        CorruptedDataset(dataset, corruptions=names, severities=[1, 2], preset="mnistc")
    options = MakeCOptions(str(tmp_path / "mnist_c"), corruptions=names, preset="mnistc", progress=False)
    summary = write_c(dataset, options, num_classes=10)
    assert summary["layout"] == "mnistc_npy" and summary["reader"]["root"] == str(tmp_path / "mnist_c")
    sets = released_c_sets("mnistc", tmp_path / "mnist_c")
    assert [(c, s) for c, s, _ in sets] == [("shear", 1), ("stripe", 1)]
    expected = quantize_uint8_round(corrupt(x, "stripe", 1, preset="mnistc", seed=0))
    assert torch.equal(torch.stack([sets[1][2][i][0] for i in range(len(x))]), to_float(expected))
    assert [sets[1][2][i][1] for i in range(len(x))] == y.tolist()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_corrupt_never_writes_into_its_input(dtype):
    """Every corruption leaves the caller's batch untouched (shot noise once scaled a float64 input in place)."""
    from robustnoise.corruptions.presets import ALL_CORRUPTIONS, MNIST_C_CORRUPTIONS

    gen = torch.Generator().manual_seed(0)
    rgb = torch.rand(2, 3, 32, 32, generator=gen, dtype=dtype)
    on_grid = (rgb * 255).round() / 255  # shot noise takes another path on the uint8 grid
    gray = torch.rand(2, 1, 28, 28, generator=gen, dtype=dtype)
    cases = [(x, name, "cifar") for name in ALL_CORRUPTIONS for x in (rgb, on_grid)]
    cases += [(gray, name, "mnistc") for name in MNIST_C_CORRUPTIONS]
    for images, name, preset in cases:
        before = images.clone()
        corrupt(images, name, 1 if preset == "mnistc" else 3, preset=preset, seed=0)
        assert torch.equal(images, before), (name, preset)
