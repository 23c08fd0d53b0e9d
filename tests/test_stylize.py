"""AdaIN stylization (ref. §5.1): the op, the released key layout, on-the-fly stylized batches, task=stylize."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from PIL import Image
from torch import nn

from robustnoise.data import DigitsDataModule
from robustnoise.data.stylized import StylizedDataModule
from robustnoise.methods.configs import method_from_yaml
from robustnoise.stylize.adain import AdaINStylizer, adain, build_decoder, build_encoder, feature_mean_std
from robustnoise.utils.errors import CheckpointError, ConfigError, DatasetNotFoundError

from .conftest import compose_config

# The released vgg_normalised.pth is the whole VGG-19 to relu5_4: 53 modules, convs at these indices.
RELEASED_ENCODER_CONVS = {0: (3, 3, 1), 2: (64, 3, 3), 5: (64, 64, 3), 9: (128, 64, 3), 12: (128, 128, 3),
                          16: (256, 128, 3), 19: (256, 256, 3), 22: (256, 256, 3), 25: (256, 256, 3),
                          29: (512, 256, 3), 32: (512, 512, 3), 35: (512, 512, 3), 38: (512, 512, 3),
                          42: (512, 512, 3), 45: (512, 512, 3), 48: (512, 512, 3), 51: (512, 512, 3)}  # fmt: skip
RELEASED_DECODER_CONVS = {1: (256, 512), 5: (256, 256), 8: (256, 256), 11: (256, 256), 14: (128, 256),
                          18: (128, 128), 21: (64, 128), 25: (64, 64), 28: (3, 64)}  # fmt: skip


def _released_state(convs: dict[int, tuple[int, ...]], seed: int) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for index, shape in convs.items():
        out_ch, in_ch, k = shape if len(shape) == 3 else (*shape, 3)
        fan_in = in_ch * k * k
        state[f"{index}.weight"] = torch.randn(out_ch, in_ch, k, k, generator=gen) * (2.0 / fan_in) ** 0.5
        state[f"{index}.bias"] = torch.randn(out_ch, generator=gen) * 0.01
    return state


@pytest.fixture(scope="module")
def adain_files(tmp_path_factory) -> dict[str, Path]:
    """Random weights in the released layout and a folder of six synthetic "paintings" (stripes, checks, colours)."""
    root = tmp_path_factory.mktemp("adain")
    torch.save(_released_state(RELEASED_ENCODER_CONVS, 0), root / "vgg_normalised.pth")
    torch.save(_released_state(RELEASED_DECODER_CONVS, 1), root / "decoder.pth")
    styles = root / "styles" / "painter"
    styles.mkdir(parents=True)
    grid = torch.arange(24)
    for i in range(6):
        colour = torch.tensor([(i * 40) % 256, (255 - i * 30) % 256, (i * 90) % 256])
        pattern = ((grid[:, None] // (i + 2) + grid[None, :] // (6 - i % 3)) % 2).float()
        pixels = (pattern[..., None] * colour + (1 - pattern[..., None]) * (255 - colour)).byte().numpy()
        Image.fromarray(pixels[:, : 20 + i]).save(styles / f"p{i}.{'png' if i % 2 else 'jpg'}")
    return {"encoder": root / "vgg_normalised.pth", "decoder": root / "decoder.pth", "style_dir": root / "styles"}


@pytest.fixture(scope="module")
def stylizer(adain_files) -> AdaINStylizer:
    net = AdaINStylizer.from_files(adain_files["encoder"], adain_files["decoder"])
    net.load_style_folder(adain_files["style_dir"], size=16)
    return net


def test_network_layout_matches_the_released_files():
    encoder, decoder = build_encoder(), build_decoder()
    assert len(encoder) == 31 and len(decoder) == 29
    enc_convs = {int(k.split(".")[0]): tuple(v.shape) for k, v in encoder.state_dict().items() if k.endswith("weight")}
    assert enc_convs == {i: (o, c, k, k) for i, (o, c, k) in RELEASED_ENCODER_CONVS.items() if i < 31}
    dec_convs = {int(k.split(".")[0]): tuple(v.shape) for k, v in decoder.state_dict().items() if k.endswith("weight")}
    assert dec_convs == {i: (o, c, 3, 3) for i, (o, c) in RELEASED_DECODER_CONVS.items()}
    assert all(m.ceil_mode for m in encoder if isinstance(m, nn.MaxPool2d))
    assert isinstance(encoder[30], nn.ReLU) and isinstance(decoder[28], nn.Conv2d)  # relu4_1 last; no final ReLU


def test_from_files_loads_the_released_layout_and_keeps_31_modules(adain_files):
    net = AdaINStylizer.from_files(adain_files["encoder"], adain_files["decoder"])
    released_enc = torch.load(adain_files["encoder"], weights_only=True)
    released_dec = torch.load(adain_files["decoder"], weights_only=True)
    assert set(net.encoder.state_dict()) == {k for k in released_enc if int(k.split(".")[0]) < 31}
    for key, value in net.encoder.state_dict().items():
        assert torch.equal(value, released_enc[key])
    for key, value in net.decoder.state_dict().items():
        assert torch.equal(value, released_dec[key])


def test_wrong_weight_files_are_one_line_errors(adain_files, tmp_path):
    with pytest.raises(CheckpointError, match="decoder.pth layout") as err:
        AdaINStylizer.from_files(adain_files["encoder"], adain_files["encoder"])  # an encoder given as decoder
    assert "\n" not in str(err.value)
    with pytest.raises(CheckpointError, match="not found at .*nope.pth"):
        AdaINStylizer.from_files(tmp_path / "nope.pth", adain_files["decoder"])
    (tmp_path / "junk.pth").write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read AdaIN encoder"):
        AdaINStylizer.from_files(tmp_path / "junk.pth", adain_files["decoder"])
    with pytest.raises(DatasetNotFoundError, match="style images not found"):
        AdaINStylizer().load_style_folder(tmp_path)


def test_adain_gives_the_style_statistics_per_sample_and_channel():
    gen = torch.Generator().manual_seed(0)
    content = torch.randn(3, 8, 5, 6, generator=gen) * 3 + 1
    style_mean = torch.randn(3, 8, generator=gen)
    style_std = torch.rand(3, 8, generator=gen) + 0.5
    mean, std = feature_mean_std(adain(content, style_mean, style_std))
    torch.testing.assert_close(mean, style_mean, atol=1e-5, rtol=0)
    torch.testing.assert_close(std, style_std, atol=1e-4, rtol=1e-4)
    # std is sqrt(unbiased var + 1e-5)
    torch.testing.assert_close(feature_mean_std(content)[1], (content.flatten(2).var(2) + 1e-5).sqrt())


class _Recorder(nn.Module):
    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        self.seen = feats.clone()
        return torch.zeros(len(feats), 3, feats.shape[-2] * 8, feats.shape[-1] * 8)


def test_decoder_input_has_style_statistics_at_alpha_1_and_content_features_at_alpha_0(stylizer):
    net = AdaINStylizer(stylizer.encoder, _Recorder())
    net.style_mean, net.style_std = stylizer.style_mean, stylizer.style_std
    content = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    index = torch.tensor([5, 0, 3, 3])
    net(content, alpha=1.0, style_index=index)
    mean, std = feature_mean_std(net.decoder.seen)
    torch.testing.assert_close(mean, stylizer.style_mean[index], atol=1e-4, rtol=1e-4)
    # exact where the content channel varies; a constant (dead ReLU) channel cannot take a style's spread
    var_c = stylizer.encoder(content).flatten(2).var(2)
    expected = (stylizer.style_std[index] ** 2 * var_c / (var_c + 1e-5) + 1e-5).sqrt()
    torch.testing.assert_close(std, expected, atol=1e-4, rtol=1e-4)
    varying = var_c > 1e-2
    assert varying.float().mean() > 0.3
    # (up to the second 1e-5 the reference adds on top of a near-constant style channel's variance)
    torch.testing.assert_close(std[varying], stylizer.style_std[index][varying], atol=2e-3, rtol=1e-3)
    net(content, alpha=0.0, style_index=index)
    torch.testing.assert_close(net.decoder.seen, stylizer.encoder(content))


def test_stylized_images_are_new_images_in_unit_range_and_seeded(stylizer, digits):
    assert stylizer.num_styles == 6
    content = digits[0][:8]
    out = stylizer(content, generator=torch.Generator().manual_seed(3))
    assert out.shape == content.shape and out.dtype == content.dtype  # grayscale in, grayscale out (28 px, cropped)
    assert out.min() >= 0 and out.max() <= 1
    assert (out - content).abs().mean() > 0.05
    again = stylizer(content, generator=torch.Generator().manual_seed(3))
    other = stylizer(content, generator=torch.Generator().manual_seed(4))
    assert torch.equal(out, again)
    assert not torch.equal(out, other)
    picks = [stylizer.pick_styles(50, torch.Generator().manual_seed(s)) for s in (7, 7, 8)]
    assert torch.equal(picks[0], picks[1]) and not torch.equal(picks[0], picks[2])
    rgb = stylizer(torch.rand(2, 3, 20, 20), style_index=torch.tensor([0, 1]))
    assert rgb.shape == (2, 3, 20, 20)


def _adain_datamodule(adain_files, **kwargs) -> StylizedDataModule:
    return StylizedDataModule(
        DigitsDataModule(batch_size=40),
        source="adain",
        encoder=str(adain_files["encoder"]),
        decoder=str(adain_files["decoder"]),
        style_dir=str(adain_files["style_dir"]),
        style_size=16,
        stylized_batch_size=12,
        **kwargs,
    )


def test_on_the_fly_batches_have_the_ant_sin_format(adain_files):
    dm = _adain_datamodule(adain_files)
    dm.setup("fit")
    loader = dm.train_dataloader()
    batch = next(iter(loader))[0]  # CombinedLoader items: (batch, batch_idx, dataloader_idx)
    clean_x = batch["stylized"][0].clone()
    out = dm.on_after_batch_transfer(batch, 0)
    assert set(out) == {"clean", "stylized"}
    x_s, y_s = out["stylized"]
    assert x_s.shape == (12, 1, 28, 28) and torch.equal(y_s, batch["stylized"][1])
    assert x_s.min() >= 0 and x_s.max() <= 1 and (x_s - clean_x).abs().mean() > 0.05
    assert dm.stylizer.num_styles == 6
    plain = (torch.zeros(2, 1, 28, 28), torch.zeros(2, dtype=torch.long))
    assert dm.on_after_batch_transfer(plain, 0) is plain  # validation batches pass through


def test_ant_sin_trains_on_adain_batches(adain_files, tmp_path):
    dm = _adain_datamodule(adain_files)
    method = method_from_yaml(
        "ant1x1",
        DigitsDataModule().info(),
        optimizer={"name": "sgd", "lr": 0.01, "momentum": 0.9},
        scheduler={"name": "none"},
        epsilon=6.0,
        restart_steps=1,
        restart_every=4,
        restart_unit="step",
        p_clean=0.25,
        p_stylized=0.3,
    )
    seen = {}
    split, step = method._split_batch, method.classifier_step
    method._split_batch = lambda batch: seen.setdefault("split", split(batch))
    method.classifier_step = lambda x, y: (seen.setdefault("x", x.clone()), step(x, y))[1]
    trainer = pl.Trainer(
        fast_dev_run=1,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(tmp_path),
    )
    trainer.fit(method, datamodule=dm)
    (x, _), (x_sty, _) = seen["split"]
    assert len(x) == 40 and x_sty.shape == (12, 1, 28, 28)
    torch.testing.assert_close(seen["x"][10:22], x_sty)  # 25 % clean, then the 30 % stylized rows
    assert not any(torch.equal(x_sty[0], img) for img in x)


def test_missing_adain_inputs_are_one_line_errors(adain_files, tmp_path):
    with pytest.raises(CheckpointError, match=r"AdaIN weights not found: .*missing\.pth; expected data.encoder"):
        _adain_datamodule({**adain_files, "encoder": tmp_path / "missing.pth"}).setup("fit")
    with pytest.raises(DatasetNotFoundError, match="style images not found at"):
        _adain_datamodule({**adain_files, "style_dir": tmp_path}).setup("fit")
    with pytest.raises(ConfigError, match="source must be one of"):
        StylizedDataModule(DigitsDataModule(), "x", source="gpu")
    with pytest.raises(ConfigError, match="needs data.encoder, data.decoder and data.style_dir"):  # before setup
        StylizedDataModule(DigitsDataModule(), source="adain", encoder=str(adain_files["encoder"]))


def test_stylized_adain_config_composes(adain_files, tmp_path):
    from robustnoise.utils.instantiate import instantiate

    cfg = compose_config(
        ["data=stylized_adain", f"data.encoder={adain_files['encoder']}", "data.alpha=0.5", "data.batch_size=16"],
        tmp_path,
    )
    dm = instantiate(cfg.data)
    assert isinstance(dm, StylizedDataModule) and dm.source == "adain" and dm.alpha == 0.5
    assert dm.batch_size == dm.clean.batch_size == dm.stylized_batch_size == 16  # wrapper sizes reach the clean data
    assert dm.style_options["style_dir"].endswith("adain/styles") and dm.style_seed == cfg.seed


def test_task_stylize_writes_the_sin_layout_that_the_folder_source_reads(adain_files, tmp_path):
    from robustnoise.train import run

    out = tmp_path / "sin"
    overrides = [f"stylize.{k}={v}" for k, v in adain_files.items()]
    cfg = compose_config(
        ["task=stylize", *overrides, f"stylize.out_dir={out}", "stylize.max_images=32", "stylize.style_size=16",
         "stylize.progress=false", "stylize.device=cpu", "stylize.batch_size=16", "stylize.seed=5"],
        tmp_path,
    )  # fmt: skip
    summary = run(cfg)
    assert summary["splits"] == {"train": 32} and summary["num_styles"] == 6
    clean = DigitsDataModule()
    clean.setup("fit")
    x, y = clean.train_set.tensors
    files = sorted(out.glob("train/*/*.png"))
    assert len(files) == 32
    for path in files[:5]:  # <out>/train/<label>/<index>.png, the index's label
        assert int(path.parent.name) == int(y[int(path.stem)])
        image = torch.from_numpy(np.array(Image.open(path)))
        assert image.shape == (28, 28) and (image.float() / 255 - x[int(path.stem), 0]).abs().mean() > 0.05
    with open(out / "styles.csv") as handle:
        rows = list(csv.DictReader(handle))
    styles = torch.randint(6, (32,), generator=torch.Generator().manual_seed(5))  # image i -> style i of the seed
    names = sorted(p.relative_to(adain_files["style_dir"]).as_posix() for p in adain_files["style_dir"].rglob("*.*"))
    assert {r["image"]: r["style"] for r in rows} == {
        f"train/{int(y[i])}/{i:02d}.png": names[int(styles[i])] for i in range(32)
    }
    assert len(set(y[:32].tolist())) == 10  # every class present, so the folder source accepts it
    dm = StylizedDataModule(DigitsDataModule(batch_size=8), str(out))
    dm.setup("fit")
    assert len(dm.stylized_set) == 32
    image, label = dm.stylized_set[0]
    stem = Path(dm.stylized_set.samples[0][0]).stem
    assert label == int(y[int(stem)]) and image.shape == (1, 28, 28)
    with pytest.raises(ConfigError, match="not empty"):
        run(cfg)


def test_content_of_folder_datasets_uses_the_eval_transform_and_file_names(tmp_path):
    from torch.utils.data import Subset
    from torchvision import datasets
    from torchvision.transforms import v2

    from robustnoise.stylize.make_stylized import _deterministic, _sample_names

    for c in ("n01", "n02"):
        (tmp_path / c).mkdir()
        Image.new("RGB", (12, 10), color=(10, 20, 30)).save(tmp_path / c / f"img_{c}.JPEG")

    class Module:
        def eval_transform(self):
            return v2.Compose([v2.ToImage(), v2.CenterCrop(8), v2.ToDtype(torch.float32, scale=True)])

    folder = datasets.ImageFolder(str(tmp_path), transform=v2.RandomResizedCrop(4))
    plain = _deterministic(Subset(folder, [1, 0]), Module())
    assert plain[0][0].shape == (3, 8, 8) and plain[0][1] == 1  # the eval transform, on a copy
    assert folder.transform.__class__ is v2.RandomResizedCrop
    assert _sample_names(plain, 2) == ["img_n02", "img_n01"]
