"""Released -C datasets on tiny fixtures written in the released layouts (no downloads)."""

from __future__ import annotations

import os
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader
from torchvision.datasets.utils import calculate_md5
from torchvision.transforms import v2

from robustnoise.corruptions.presets import ALL_CORRUPTIONS
from robustnoise.data.released_c import (
    CIFAR_C_MD5,
    CifarC,
    ImageNetC,
    MnistC,
    TinyImageNetC,
    available_sets,
    released_c_sets,
)
from robustnoise.utils.errors import DatasetNotFoundError, RobustnoiseError

N = 8  # images per severity block


def cifar_block(corruption_id: int) -> np.ndarray:
    """5 severity blocks of N images; pixel (0, 0) encodes (corruption id, severity, image index)."""
    images = np.full((5 * N, 32, 32, 3), 7, dtype=np.uint8)
    for s in range(1, 6):
        for i in range(N):
            images[(s - 1) * N + i, 0, 0] = (corruption_id, s, i)
    return images


@pytest.fixture
def cifar_root(tmp_path: Path) -> Path:
    root = tmp_path / "CIFAR-10-C"
    root.mkdir()
    for name in ("gaussian_noise", "fog"):
        np.save(root / f"{name}.npy", cifar_block(ALL_CORRUPTIONS.index(name)))
    np.save(root / "labels.npy", np.tile(np.arange(N, dtype=np.uint8), 5))
    return root


def assert_one_line(excinfo: pytest.ExceptionInfo, *fragments: str) -> None:
    message = str(excinfo.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message


@pytest.mark.parametrize("corruption", ["gaussian_noise", "fog"])
@pytest.mark.parametrize("severity", [1, 3, 5])
def test_cifar_c_reads_block_of_severity(cifar_root: Path, corruption: str, severity: int):
    ds = CifarC(cifar_root, corruption, severity, variant="cifar10")
    raw = np.load(cifar_root / f"{corruption}.npy")
    assert len(ds) == N and ds.key == f"{corruption}/s{severity}"
    assert ds._images is None  # memory-mapped lazily, on first item
    for i in range(N):
        image, label = ds[i]
        assert image.dtype == torch.float32 and image.shape == (3, 32, 32)
        assert label == i and isinstance(label, int)
        pixel = (image[:, 0, 0] * 255).round().to(torch.int64).tolist()
        assert pixel == [ALL_CORRUPTIONS.index(corruption), severity, i]
        assert (image[:, 5, 5] * 255).round().tolist() == [7.0] * 3
        assert torch.equal(
            image,
            v2.functional.to_dtype(
                torch.from_numpy(raw[(severity - 1) * N + i]).permute(2, 0, 1), torch.float32, scale=True
            ),
        )
    assert isinstance(ds._images, np.memmap)
    clone = pickle.loads(pickle.dumps(ds))  # workers re-open the map instead of receiving its data
    assert clone._images is None and torch.equal(clone[N - 1][0], ds[N - 1][0])
    with pytest.raises(IndexError):
        ds[N]


def test_cifar_c_batches(cifar_root: Path):
    x, y = next(iter(DataLoader(CifarC(cifar_root, "fog", 2), batch_size=N)))
    assert x.shape == (N, 3, 32, 32) and y.tolist() == list(range(N))
    assert x.min() >= 0.0 and x.max() <= 1.0


def test_cifar_c_errors(cifar_root: Path, tmp_path: Path):
    with pytest.raises(DatasetNotFoundError) as excinfo:
        CifarC(tmp_path / "nowhere", "fog", 1)
    assert_one_line(excinfo, "nowhere", "expected layout", "labels.npy")

    with pytest.raises(DatasetNotFoundError) as excinfo:
        CifarC(cifar_root, "snow", 1)
    assert_one_line(excinfo, str(cifar_root / "snow.npy"), "gaussian_noise, fog")

    with pytest.raises(RobustnoiseError, match="severity"):
        CifarC(cifar_root, "fog", 6)

    data = (cifar_root / "fog.npy").read_bytes()
    (cifar_root / "fog.npy").write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetNotFoundError) as excinfo:
        CifarC(cifar_root, "fog", 1)
    assert_one_line(excinfo, str(cifar_root / "fog.npy"), "truncated")

    (cifar_root / "fog.npy").write_bytes(b"not an npy file")
    with pytest.raises(DatasetNotFoundError) as excinfo:
        CifarC(cifar_root, "fog", 1)
    assert_one_line(excinfo, str(cifar_root / "fog.npy"), "truncated")

    np.save(cifar_root / "fog.npy", cifar_block(9)[:-1])  # first dim not a multiple of 5
    with pytest.raises(DatasetNotFoundError) as excinfo:
        CifarC(cifar_root, "fog", 1)
    assert_one_line(excinfo, str(cifar_root / "fog.npy"), "39 rows")

    np.save(cifar_root / "fog.npy", cifar_block(9).astype(np.float32))
    with pytest.raises(DatasetNotFoundError) as excinfo:
        CifarC(cifar_root, "fog", 1)
    assert_one_line(excinfo, str(cifar_root / "fog.npy"), "float32", "uint8")

    np.save(cifar_root / "fog.npy", cifar_block(9).transpose(0, 3, 1, 2))  # CHW instead of HWC
    with pytest.raises(DatasetNotFoundError) as excinfo:
        CifarC(cifar_root, "fog", 1)
    assert_one_line(excinfo, str(cifar_root / "fog.npy"), "(40, 3, 32, 32)")

    np.save(cifar_root / "fog.npy", cifar_block(9)[:35])  # 5 blocks of 7, labels for 5 blocks of 8
    with pytest.raises(DatasetNotFoundError) as excinfo:
        CifarC(cifar_root, "fog", 1)
    assert_one_line(excinfo, str(cifar_root / "labels.npy"), "40 labels", "35 images")

    np.save(cifar_root / "labels.npy", np.tile(np.arange(N) * 12, 5).astype(np.uint8))  # CIFAR-100 labels
    with pytest.raises(DatasetNotFoundError) as excinfo:
        CifarC(cifar_root, "gaussian_noise", 1, variant="cifar10")
    assert_one_line(excinfo, str(cifar_root / "labels.npy"), "0..84", "0..9")
    assert CifarC(cifar_root, "gaussian_noise", 1, variant="cifar100")[1][1] == 12

    np.save(cifar_root / "labels.npy", np.zeros((5 * N, 1), dtype=np.uint8))
    with pytest.raises(DatasetNotFoundError) as excinfo:
        CifarC(cifar_root, "gaussian_noise", 1)
    assert_one_line(excinfo, str(cifar_root / "labels.npy"), "1-D")

    (cifar_root / "labels.npy").unlink()
    with pytest.raises(DatasetNotFoundError) as excinfo:
        CifarC(cifar_root, "gaussian_noise", 1)
    assert_one_line(excinfo, str(cifar_root / "labels.npy"), "missing")


def test_cifar_c_md5(cifar_root: Path, monkeypatch: pytest.MonkeyPatch):
    assert set(CIFAR_C_MD5) == {*ALL_CORRUPTIONS, "labels"}
    assert all(re.fullmatch(r"[0-9a-f]{32}", v) for row in CIFAR_C_MD5.values() for v in row)

    path = cifar_root / "gaussian_noise.npy"
    with pytest.raises(DatasetNotFoundError) as excinfo:  # the fixture is not the released file
        CifarC(cifar_root, "gaussian_noise", 2, variant="cifar10", verify_md5=True)
    assert_one_line(excinfo, str(path), CIFAR_C_MD5["gaussian_noise"][0])

    fixture = {name: calculate_md5(cifar_root / f"{name}.npy") for name in ("gaussian_noise", "labels")}
    for name, md5 in fixture.items():  # as if the fixture were the released CIFAR-100-C file
        monkeypatch.setitem(CIFAR_C_MD5, name, ("0" * 32, md5))
    CifarC(cifar_root, "gaussian_noise", 2, verify_md5=True)  # no variant: either column
    CifarC(cifar_root, "gaussian_noise", 2, variant="cifar100", verify_md5=True)
    CifarC(cifar_root, "gaussian_noise", 2, variant="cifar10")  # not verified unless asked
    with pytest.raises(DatasetNotFoundError) as excinfo:  # the variant's column only
        CifarC(cifar_root, "gaussian_noise", 2, variant="cifar10", verify_md5=True)
    assert_one_line(excinfo, str(path), "0" * 32)
    for name, md5 in fixture.items():  # as if it were the released CIFAR-10-C file: no variant reads that column too
        monkeypatch.setitem(CIFAR_C_MD5, name, (md5, "0" * 32))
    CifarC(cifar_root, "gaussian_noise", 2, verify_md5=True)

    data = bytearray(path.read_bytes())
    data[-1] ^= 1  # one changed byte in the image data
    path.write_bytes(bytes(data))
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    CifarC(cifar_root, "gaussian_noise", 2)  # still loads
    with pytest.raises(DatasetNotFoundError) as excinfo:
        CifarC(cifar_root, "gaussian_noise", 2, verify_md5=True)
    assert_one_line(excinfo, str(path), "md5", fixture["gaussian_noise"])


# ----------------------------------------------------------------------------------------------------------- MNIST-C


def write_mnist_c(root: Path, corruption: str, count: int = 6) -> None:
    folder = root / corruption
    folder.mkdir(parents=True)
    for split, n in (("train", count + 2), ("test", count)):
        images = np.zeros((n, 28, 28, 1), dtype=np.uint8)
        images[:, 0, 0, 0] = np.arange(n) * 10
        images[:, 27, 27, 0] = len(corruption)
        np.save(folder / f"{split}_images.npy", images)
        np.save(folder / f"{split}_labels.npy", (np.arange(n) % 10).astype(np.uint8))


@pytest.fixture
def mnist_root(tmp_path: Path) -> Path:
    root = tmp_path / "mnist_c"
    for name in ("identity", "shot_noise", "canny_edges"):
        write_mnist_c(root, name)
    return root


def test_mnist_c(mnist_root: Path):
    ds = MnistC(mnist_root, "shot_noise")
    assert len(ds) == 6 and ds.key == "shot_noise/s1" and ds.severity == 1
    for i in range(6):
        image, label = ds[i]
        assert image.shape == (1, 28, 28) and image.dtype == torch.float32 and label == i
        assert round(float(image[0, 0, 0]) * 255) == 10 * i and round(float(image[0, 27, 27]) * 255) == 10
    assert len(MnistC(mnist_root, "identity", split="train")) == 8


def test_mnist_c_errors(mnist_root: Path, tmp_path: Path):
    with pytest.raises(DatasetNotFoundError) as excinfo:
        MnistC(tmp_path / "nowhere", "shot_noise")
    assert_one_line(excinfo, "nowhere", "expected layout", "{train,test}_{images,labels}.npy")
    with pytest.raises(DatasetNotFoundError) as excinfo:
        MnistC(mnist_root, "fog")
    assert_one_line(excinfo, str(mnist_root / "fog"), "shot_noise, canny_edges, identity")
    with pytest.raises(RobustnoiseError, match="split"):
        MnistC(mnist_root, "shot_noise", split="val")
    (mnist_root / "shot_noise" / "test_labels.npy").unlink()
    with pytest.raises(DatasetNotFoundError) as excinfo:
        MnistC(mnist_root, "shot_noise")
    assert_one_line(excinfo, str(mnist_root / "shot_noise" / "test_labels.npy"))
    np.save(mnist_root / "shot_noise" / "test_labels.npy", np.zeros(5, dtype=np.uint8))
    with pytest.raises(DatasetNotFoundError) as excinfo:
        MnistC(mnist_root, "shot_noise")
    assert_one_line(excinfo, "5 labels", "6 images")
    np.save(mnist_root / "shot_noise" / "test_images.npy", np.zeros((5, 1, 28, 28), dtype=np.uint8))
    with pytest.raises(DatasetNotFoundError) as excinfo:
        MnistC(mnist_root, "shot_noise")
    assert_one_line(excinfo, str(mnist_root / "shot_noise" / "test_images.npy"), "(N, 28, 28, 1)")


# ---------------------------------------------------------------------------------------- ImageNet-C / Tiny-ImageNet-C

WNIDS = ("n02085620", "n01440764", "n01443537")  # created unsorted on purpose


def write_jpegs(folder: Path, size: int, count: int = 2, seed: int = 0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for k in range(count):
        pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"img_{k:08d}.JPEG", quality=85)


def write_c_tree(root: Path, size: int, corruptions=("gaussian_noise",), severities=(1, 2), wnids=WNIDS) -> Path:
    for c in corruptions:
        for s in severities:
            for k, wnid in enumerate(wnids):
                write_jpegs(root / c / str(s) / wnid, size, seed=k + 10 * s)
    return root


@pytest.mark.parametrize(("cls", "size"), [(ImageNetC, 224), (TinyImageNetC, 64)])
def test_imagenet_c_labels_and_no_resize(tmp_path: Path, cls: type[ImageNetC], size: int):
    root = write_c_tree(tmp_path / "C", size)
    ds = cls(root, "gaussian_noise", 2, num_classes=3)
    assert ds.image_size == size and ds.key == "gaussian_noise/s2"
    assert ds.class_to_idx == {w: i for i, w in enumerate(sorted(WNIDS))}
    assert len(ds) == 6
    for (path, expected), index in zip(ds.samples, range(len(ds))):
        image, label = ds[index]
        assert label == expected == sorted(WNIDS).index(Path(path).parent.name)
        assert image.shape == (3, size, size) and image.dtype == torch.float32
        with Image.open(path) as img:
            decoded = torch.from_numpy(np.array(img.convert("RGB"))).permute(2, 0, 1)
        assert type(image) is torch.Tensor
        assert torch.equal(
            (image * 255).round().to(torch.uint8), decoded
        )  # exactly the released pixels: no resize, crop or normalisation
    same = cls(root, "gaussian_noise", 2, class_to_idx={w: i for i, w in enumerate(sorted(WNIDS))})
    assert same.samples == ds.samples


def test_imagenet_c_errors(tmp_path: Path):
    root = write_c_tree(tmp_path / "ImageNet-C", 224)
    with pytest.raises(DatasetNotFoundError) as excinfo:
        ImageNetC(tmp_path / "nowhere", "gaussian_noise", 1)
    assert_one_line(excinfo, "nowhere", "expected layout", "<wnid>/*.JPEG")
    with pytest.raises(DatasetNotFoundError) as excinfo:
        ImageNetC(root, "fog", 1)
    assert_one_line(excinfo, str(root / "fog"), "gaussian_noise")
    with pytest.raises(DatasetNotFoundError) as excinfo:
        ImageNetC(root, "gaussian_noise", 3)
    assert_one_line(excinfo, str(root / "gaussian_noise" / "3"))
    with pytest.raises(DatasetNotFoundError) as excinfo:  # default: 1000 classes
        ImageNetC(root, "gaussian_noise", 1)
    assert_one_line(excinfo, str(root / "gaussian_noise" / "1"), "3 class folders, expected 1000")

    unsorted = {w: i for i, w in enumerate(WNIDS)}  # e.g. a training set indexed by an unsorted wnids.txt
    with pytest.raises(RobustnoiseError) as excinfo:
        ImageNetC(root, "gaussian_noise", 1, class_to_idx=unsorted)
    assert_one_line(excinfo, "sorted-wnid order")
    other = {w: i for i, w in enumerate(sorted([*WNIDS[:2], "n09999999"]))}
    with pytest.raises(RobustnoiseError) as excinfo:
        ImageNetC(root, "gaussian_noise", 1, class_to_idx=other)
    assert_one_line(excinfo, "differ from the training classes", "n09999999", WNIDS[2])

    big = sorted(WNIDS)[0]
    Image.new("RGB", (256, 256)).save(root / "gaussian_noise" / "1" / big / "img_00000000.JPEG")
    with pytest.raises(DatasetNotFoundError) as excinfo:  # checked on construction (first image)
        ImageNetC(root, "gaussian_noise", 1, num_classes=3)
    assert_one_line(excinfo, f"{big}/img_00000000.JPEG", "256x256", "expected 224x224", "without resize")
    assert len(ImageNetC(root, "gaussian_noise", 1, num_classes=3, image_size=256)) == 6

    Image.new("RGB", (256, 256)).save(root / "gaussian_noise" / "2" / big / "img_00000001.JPEG")
    ds = ImageNetC(root, "gaussian_noise", 2, num_classes=3)
    ds[0]
    with pytest.raises(DatasetNotFoundError) as excinfo:  # and on every item
        ds[1]
    assert_one_line(excinfo, f"{big}/img_00000001.JPEG", "256x256")

    empty = root / "snow" / "1"
    for wnid in WNIDS:
        (empty / wnid).mkdir(parents=True)
    with pytest.raises(DatasetNotFoundError) as excinfo:
        ImageNetC(root, "snow", 1, num_classes=3)
    assert_one_line(excinfo, "no images", str(empty))


def test_tiny_imagenet_c_broken_frost(tmp_path: Path):
    root = write_c_tree(tmp_path / "Tiny-ImageNet-C", 64, corruptions=("fog",), severities=(1,), wnids=WNIDS[:2])
    for k in range(1000):  # the first Zenodo upload: frost/ holds all 1000 ImageNet classes
        (root / "frost" / "1" / f"n{k:08d}").mkdir(parents=True)
    with pytest.raises(DatasetNotFoundError) as excinfo:
        TinyImageNetC(root, "frost", 1)
    assert_one_line(excinfo, str(root / "frost" / "1"), "1000 class folders, expected 200", "Zenodo 8206060", "#60")
    train_classes = {w: i for i, w in enumerate(sorted(WNIDS[:2]))}
    assert len(TinyImageNetC(root, "fog", 1, class_to_idx=train_classes)) == 4
    with pytest.raises(DatasetNotFoundError) as excinfo:
        TinyImageNetC(root, "frost", 1, class_to_idx=train_classes)
    assert_one_line(excinfo, "1000 class folders, expected 2", "Zenodo 8206060")
    with pytest.raises(DatasetNotFoundError) as excinfo:  # other corruptions: plain count mismatch
        TinyImageNetC(root, "fog", 1)
    assert_one_line(excinfo, "2 class folders, expected 200")
    assert "Zenodo" not in str(excinfo.value)


# ------------------------------------------------------------------------------------------------- sets of all kinds


def test_available_and_released_sets(cifar_root: Path, mnist_root: Path, tmp_path: Path):
    assert available_sets("cifar10c", cifar_root) == [("gaussian_noise", s) for s in range(1, 6)] + [
        ("fog", s) for s in range(1, 6)
    ]
    assert available_sets("cifar100c", tmp_path / "nowhere") == []
    assert available_sets("mnistc", mnist_root) == [("shot_noise", 1), ("canny_edges", 1), ("identity", 1)]
    for name in ("inverse", "quantize", "saturate", "pessimal_noise"):  # mnist_c_leftovers.zip: in its order
        write_mnist_c(mnist_root, name)
    listed = [c for c, _ in available_sets("mnistc", mnist_root)]
    assert listed[3:] == ["pessimal_noise", "saturate", "quantize", "inverse"]
    tiny = write_c_tree(tmp_path / "tiny", 64, corruptions=("snow", "gaussian_noise"), severities=(2, 5))
    assert available_sets("tinyimagenetc", tiny) == [(c, s) for c in ("gaussian_noise", "snow") for s in (2, 5)]
    with pytest.raises(RobustnoiseError, match="unknown released"):
        available_sets("cifar10", cifar_root)

    sets = released_c_sets("cifar10c", cifar_root, corruptions=["fog"], severities=[2, 4], verify_md5=False)
    assert [(c, s) for c, s, _ in sets] == [("fog", 2), ("fog", 4)]
    assert all(ds.key == f"{c}/s{s}" and ds.variant == "cifar10" for c, s, ds in sets)
    assert len(released_c_sets("cifar100c", cifar_root)) == 10
    sets = released_c_sets("tinyimagenetc", tiny, num_classes=3)
    assert [(c, s) for c, s, _ in sets] == available_sets("tinyimagenetc", tiny)
    assert all(isinstance(ds, TinyImageNetC) and len(ds) == 6 for _, _, ds in sets)
    with pytest.raises(DatasetNotFoundError, match="frost"):
        released_c_sets("tinyimagenetc", tiny, corruptions=["frost"], num_classes=3)
    with pytest.raises(DatasetNotFoundError, match="no imagenetc corruption sets"):
        released_c_sets("imagenetc", tmp_path / "nowhere")

    sets = released_c_sets("mnistc", mnist_root, corruptions=["shot_noise"])
    assert [(c, s) for c, s, _ in sets] == [("shot_noise", 1)] and isinstance(sets[0][2], MnistC)
    with pytest.warns(UserWarning, match="one severity"):
        sets = released_c_sets("mnistc", mnist_root, corruptions=["shot_noise"], severities=[1, 2, 3])
    assert [(c, s) for c, s, _ in sets] == [("shot_noise", 1)]
