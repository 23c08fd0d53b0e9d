"""EDSR: official architecture and key layout, the three checkpoint formats, the corruption network, pretraining."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from robustnoise.models.edsr import (
    EDSR,
    EDSR_PRESETS,
    CorruptionNetwork,
    build_corruption_network,
    infer_edsr_config,
    load_edsr,
)
from robustnoise.utils.errors import CheckpointError, ConfigError
from tests.conftest import CONF_DIR

MEAN_SHIFT_PARAMS = 2 * (3 * 3 + 3)  # sub_mean + add_mean: 1x1 conv 3->3 with bias


def edsr_baseline(scale: int) -> EDSR:
    return EDSR(**EDSR_PRESETS["edsr_baseline"], scale=scale)


def _tiny(scale: int = 2, seed: int = 0, **kwargs) -> EDSR:
    torch.manual_seed(seed)
    net = EDSR(n_resblocks=2, n_feats=8, scale=scale, **kwargs)
    with torch.no_grad():  # random biases too, so that every key matters in the output comparisons
        for p in net.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.05)
    return net


def _reference_forward(
    sd: dict[str, torch.Tensor], x: torch.Tensor, n: int, scale: int, res_scale: float
) -> torch.Tensor:
    """EDSR from the state dict alone, written from the reference description (§2.1), pixels in [0, 255]."""

    def conv(t: torch.Tensor, key: str) -> torch.Tensor:
        w = sd[f"{key}.weight"]
        return F.conv2d(t, w, sd[f"{key}.bias"], padding=w.shape[-1] // 2)

    h = conv(conv(x * 255, "sub_mean"), "head.0")
    r = h
    for i in range(n):
        r = r + res_scale * conv(F.relu(conv(r, f"body.{i}.body.0")), f"body.{i}.body.2")
    r = conv(r, f"body.{n}") + h
    if scale == 3:
        r = F.pixel_shuffle(conv(r, "tail.0.0"), 3)
    elif scale in (2, 4):
        for stage in range(scale // 2):
            r = F.pixel_shuffle(conv(r, f"tail.0.{2 * stage}"), 2)
    return conv(conv(r, "tail.1"), "add_mean") / 255


@pytest.mark.parametrize(("scale", "count"), [(2, 1_369_859), (3, 1_554_499), (4, 1_517_571)])
def test_baseline_parameter_counts_exclude_the_mean_shifts(scale, count):
    with torch.device("meta"):
        net = edsr_baseline(scale)
    trainable = sum(p.numel() for p in net.parameters() if p.requires_grad)
    total = sum(p.numel() for p in net.parameters())
    assert trainable == count  # the published counts are the trainable ones
    assert total == count + MEAN_SHIFT_PARAMS
    assert not net.sub_mean.weight.requires_grad and "sub_mean.bias" in net.state_dict()


def test_official_key_layout_and_full_preset():
    with torch.device("meta"):
        sd = edsr_baseline(4).state_dict()
        full = EDSR(**EDSR_PRESETS["edsr"], scale=4)
        one = EDSR(n_resblocks=3, n_feats=8, scale=1)
    assert sd["head.0.weight"].shape == (64, 3, 3, 3)
    assert sd["body.15.body.2.weight"].shape == (64, 64, 3, 3) and "body.15.body.1.weight" not in sd
    assert sd["body.16.weight"].shape == (64, 64, 3, 3) and "body.16.body.0.weight" not in sd
    assert sd["tail.0.0.weight"].shape == (256, 64, 3, 3) and sd["tail.0.2.weight"].shape == (256, 64, 3, 3)
    assert sd["tail.1.weight"].shape == (3, 64, 3, 3) and sd["sub_mean.weight"].shape == (3, 3, 1, 1)
    assert (full.n_resblocks, full.n_feats, full.res_scale) == (32, 256, 0.1)
    one_keys = set(one.state_dict())
    assert "tail.1.weight" in one_keys and not any(k.startswith("tail.0.") for k in one_keys)


def test_mean_shift_values_and_forward_match_the_reference_description():
    net = _tiny(scale=3, res_scale=0.5)
    sd = net.state_dict()
    assert torch.allclose(sd["sub_mean.bias"], -255 * torch.tensor([0.4488, 0.4371, 0.4040]))
    assert torch.equal(sd["add_mean.weight"].flatten(1), torch.eye(3))
    x = torch.rand(2, 3, 7, 9)
    out = net(x)
    assert out.shape == (2, 3, 21, 27)
    assert torch.allclose(out, _reference_forward(sd, x, 2, 3, 0.5), atol=1e-5)
    for scale in (1, 2, 4):
        net = _tiny(scale=scale)
        assert torch.allclose(net(x), _reference_forward(net.state_dict(), x, 2, scale, 1.0), atol=1e-5)


@pytest.mark.parametrize("scale", [1, 2, 3, 4])
def test_infer_config_from_official_state_dict(scale):
    with torch.device("meta"):
        sd = EDSR(n_resblocks=5, n_feats=12, scale=scale).state_dict()
        full_sd = EDSR(n_resblocks=2, n_feats=256, scale=scale).state_dict()
    assert infer_edsr_config(sd) == {"n_resblocks": 5, "n_feats": 12, "scale": scale, "res_scale": 1.0}
    assert infer_edsr_config(full_sd)["res_scale"] == 0.1  # F == 256: the full EDSR


def _basicsr_keys(sd: dict[str, torch.Tensor], n: int) -> dict[str, torch.Tensor]:
    """Rename official keys to BasicSR's (reference §2.3) and drop the mean shifts, as BasicSR files have none."""
    out = {}
    for key, value in sd.items():
        if key.startswith(("sub_mean.", "add_mean.")):
            continue
        new = re.sub(rf"^body\.{n}\.", "conv_after_body.", key.replace("head.0.", "conv_first."))
        new = re.sub(r"^body\.(\d+)\.body\.0\.", r"body.\1.conv1.", new)
        new = re.sub(r"^body\.(\d+)\.body\.2\.", r"body.\1.conv2.", new)
        new = new.replace("tail.0.", "upsample.").replace("tail.1.", "conv_last.")
        out[new] = value
    return out


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_the_three_checkpoint_formats_load_and_reproduce_outputs(tmp_path, scale):
    net = _tiny(scale=scale)
    sd = net.state_dict()
    x = torch.rand(2, 3, 6, 5)
    expected = net(x)
    files = {
        "official": sd,
        "module": {f"module.{k}": v for k, v in sd.items()},
        "model": {f"model.{k}": v for k, v in sd.items()},
        "basicsr": {"params": _basicsr_keys(sd, 2)},
        "basicsr_ema": {"params_ema": {f"module.{k}": v for k, v in _basicsr_keys(sd, 2).items()}},
    }
    for name, obj in files.items():
        path = tmp_path / f"{name}.pt"
        torch.save(obj, path)
        loaded = load_edsr(path)
        assert (loaded.n_resblocks, loaded.n_feats, loaded.scale, loaded.res_scale) == (2, 8, scale, 1.0), name
        assert torch.allclose(loaded(x), expected, atol=1e-6), name


def test_res_scale_override_and_mismatches_raise_one_line_errors(tmp_path):
    path = tmp_path / "edsr.pt"
    torch.save(_tiny(scale=2).state_dict(), path)
    assert load_edsr(path, res_scale=0.1).res_scale == 0.1
    with pytest.raises(CheckpointError, match=r"edsr\.pt.*body\.2\.body\.0\.weight"):
        load_edsr(path, n_resblocks=3)  # the file has 2 blocks: the first missing key is named
    with pytest.raises(CheckpointError, match=r"edsr\.pt.*head\.0\.weight"):
        load_edsr(path, n_feats=16)
    bad = _tiny(scale=2).state_dict()
    bad["body.1.body.2.bias"] = torch.zeros(9)
    torch.save(bad, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match=r"bad\.pt.*body\.1\.body\.2\.bias") as info:
        load_edsr(tmp_path / "bad.pt")
    assert "\n" not in str(info.value)
    extra = {**_tiny(scale=2).state_dict(), "body.1.body.4.weight": torch.zeros(1)}
    torch.save(extra, tmp_path / "extra.pt")
    with pytest.raises(CheckpointError, match=r"1 unexpected keys \(e\.g\. body\.1\.body\.4\.weight\)"):
        load_edsr(tmp_path / "extra.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pt"):
        load_edsr(tmp_path / "junk.pt")
    with pytest.raises(CheckpointError, match="not found"):
        load_edsr(tmp_path / "missing.pt")


def test_perturbable_parameters_exclude_mean_shifts():
    with torch.device("meta"):
        params = CorruptionNetwork(edsr_baseline(4)).perturbable_parameters()
        tiny = CorruptionNetwork(EDSR(n_resblocks=2, n_feats=8, scale=3)).perturbable_parameters()
    assert len(params) == 74  # 37 convs: head, 16 x 2, body tail, 2 upsampler convs, final conv
    assert "edsr.head.0.weight" in params and "edsr.tail.1.bias" in params
    assert not any("mean" in name for name in params)
    assert len(tiny) == 2 * (1 + 2 * 2 + 1 + 1 + 1)


@pytest.mark.parametrize("resize", ["sr_then_down", "down_then_sr"])
@pytest.mark.parametrize("scale", [2, 3])
def test_corruption_network_keeps_the_input_size_and_range(resize, scale):
    net = CorruptionNetwork(_tiny(scale=scale), resize=resize)
    x = torch.rand(3, 3, 28, 28)  # 28 is not a multiple of 3
    y = net(x)
    assert y.shape == x.shape and y.min() >= 0 and y.max() <= 1
    raw = CorruptionNetwork(_tiny(scale=scale), resize=resize, clamp=False)(x)
    assert raw.shape == x.shape and torch.allclose(raw.clamp(0, 1), y, atol=1e-6)


def test_sr_then_down_is_the_area_average_of_the_sr_output_and_keep_returns_it():
    edsr_net = _tiny(scale=2)
    x = torch.rand(1, 3, 8, 10)
    sr = edsr_net(x)
    down = CorruptionNetwork(edsr_net, clamp=False)(x)
    assert torch.allclose(down, sr.unfold(2, 2, 2).unfold(3, 2, 2).mean((-1, -2)), atol=1e-6)
    kept = CorruptionNetwork(edsr_net, resize="keep", clamp=False)(x)
    assert kept.shape == (1, 3, 16, 20) and torch.allclose(kept, sr)
    with pytest.raises(ConfigError, match="resize"):
        CorruptionNetwork(edsr_net, resize="crop")


def test_grayscale_round_trip():
    net = CorruptionNetwork(_tiny(scale=2))
    gray = torch.rand(2, 1, 12, 12)
    out = net(gray)
    assert out.shape == gray.shape
    assert torch.allclose(out, net(gray.expand(-1, 3, -1, -1)).mean(1, keepdim=True).clamp(0, 1), atol=1e-6)


def test_functional_call_with_zero_beta_equals_forward_and_beta_changes_it():
    net = CorruptionNetwork(_tiny(scale=2), clamp=False)
    x = torch.rand(2, 3, 10, 10)
    params = net.perturbable_parameters()
    zero = {name: p + torch.zeros_like(p) for name, p in params.items()}
    assert torch.allclose(functional_call(net, zero, (x,)), net(x), atol=1e-6)
    before = {k: v.clone() for k, v in params.items()}
    beta = {"edsr.body.0.body.0.weight": params["edsr.body.0.body.0.weight"] + 0.1}
    assert not torch.allclose(functional_call(net, beta, (x,)), net(x), atol=1e-4)
    assert all(torch.equal(before[k], v) for k, v in net.perturbable_parameters().items())  # phi untouched


def test_gradient_flows_to_beta_only():
    net = build_corruption_network({"variant": "custom", "scale": 2, "n_resblocks": 1, "n_feats": 4})
    params = net.perturbable_parameters()
    beta = {k: torch.zeros_like(p, requires_grad=True) for k, p in params.items()}
    out = functional_call(net, {k: p + beta[k] for k, p in params.items()}, (torch.rand(1, 3, 6, 6),))
    grads = torch.autograd.grad(out.square().sum(), list(beta.values()))
    assert all(g.shape == b.shape for g, b in zip(grads, beta.values()))
    assert sum(float(g.abs().sum()) for g in grads) > 0
    assert all(p.grad is None for p in net.parameters())


def test_build_corruption_network_is_frozen_and_warns_on_random_init(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="robustnoise"):
        net = build_corruption_network({"variant": "custom", "scale": 2, "n_resblocks": 2, "n_feats": 8})
    assert "randomly initialised" in caplog.text
    assert not net.training and not any(p.requires_grad for p in net.parameters())
    path = tmp_path / "edsr.pt"
    source = _tiny(scale=2)
    torch.save(source.state_dict(), path)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="robustnoise"):
        loaded = build_corruption_network({"variant": "custom", "scale": 2, "weights": str(path), "resize": "keep"})
    assert "randomly" not in caplog.text
    x = torch.rand(1, 3, 5, 5)
    assert torch.allclose(loaded(x), source(x).clamp(0, 1), atol=1e-6)
    with pytest.raises(CheckpointError, match="edsr.pt"):  # a baseline config cannot take the tiny file
        build_corruption_network({"variant": "edsr_baseline", "scale": 2, "weights": str(path)})
    with pytest.raises(ConfigError, match="colour"):
        build_corruption_network({"variant": "edsr_baseline", "colour": 1})
    with pytest.raises(ConfigError, match="variant"):
        build_corruption_network({"variant": "srcnn"})


@pytest.mark.parametrize("name", ["edsr_baseline_x4", "edsr_baseline_x2", "edsr_x4", "edsr_tiny"])
def test_corruption_net_configs_build(name):
    from omegaconf import OmegaConf

    cfg = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "corruption_net" / f"{name}.yaml"), resolve=True)
    assert "_target_" not in cfg
    if name == "edsr_x4":  # 43 M parameters: check the architecture on the meta device only
        with torch.device("meta"):
            net = build_corruption_network(cfg)
        assert (net.edsr.n_feats, net.edsr.scale, net.edsr.res_scale) == (256, 4, 0.1)
        return
    net = build_corruption_network(cfg)
    assert net.edsr.scale == cfg["scale"] and net.resize == "sr_then_down"
    assert net(torch.rand(1, 3, 8, 8)).shape == (1, 3, 8, 8)


def test_pretrain_edsr_task_lowers_the_loss_and_writes_a_loadable_file(make_cfg, tmp_path):
    from robustnoise.train import run

    cfg = make_cfg(
        "task=pretrain_edsr",
        "pretrain_edsr.n_resblocks=2",
        "pretrain_edsr.n_feats=8",
        "pretrain_edsr.steps=100",
        "pretrain_edsr.lr=1e-3",
        "pretrain_edsr.val_images=100",
        "pretrain_edsr.progress=false",
        "pretrain_edsr.device=cpu",
    )
    result = run(cfg)
    assert result["l1_last"] < result["l1_first"] / 3
    assert result["psnr"] > result["psnr_before"] + 10
    path = Path(result["path"])
    assert path.parent == tmp_path
    assert json.loads((tmp_path / "pretrain_edsr.json").read_text())["psnr"] == result["psnr"]
    sd = torch.load(path, weights_only=True)
    assert "sub_mean.weight" in sd and "tail.1.weight" in sd  # the official plain layout
    net = load_edsr(path)
    assert (net.n_resblocks, net.n_feats, net.scale) == (2, 8, 2)
    hr = torch.rand(1, 3, 8, 8)
    assert net(F.interpolate(hr, size=(4, 4), mode="bicubic", antialias=True)).shape == hr.shape


def test_pretrain_edsr_with_a_preset_trains_the_preset_not_the_small_default(make_cfg, tmp_path):
    from robustnoise.train import run

    cfg = make_cfg(
        "task=pretrain_edsr",
        "pretrain_edsr.variant=edsr_baseline",
        "pretrain_edsr.steps=1",
        "pretrain_edsr.batch_size=2",
        "pretrain_edsr.val_images=2",
        "pretrain_edsr.progress=false",
        "pretrain_edsr.device=cpu",
    )
    net = load_edsr(run(cfg)["path"])
    assert (net.n_resblocks, net.n_feats, net.scale) == (16, 64, 2)
