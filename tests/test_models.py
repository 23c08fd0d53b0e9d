"""Tests for the model registry, the normalising wrapper and checkpoint loading (CPU, no downloads)."""

import pytest
import torch
import torchvision
from torch import nn

from robustnoise.models import NormalizedClassifier, create_model, list_models, load_classifier_weights
from robustnoise.utils.errors import CheckpointError, RobustnoiseError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# name -> (in_chans, image_size) of a small smoke-test input.
SMOKE_INPUTS = {
    "madry_cnn": (1, 28),
    "preact_resnet18": (3, 32),
    "preact_resnet50": (3, 32),
    "resnet18": (3, 32),
    "resnet50": (3, 32),
    "densenet121": (3, 32),
    "inception_v3": (3, 75),
}


def test_list_models_matches_smoke_table():
    assert list_models() == sorted(SMOKE_INPUTS)


@pytest.mark.parametrize("name", sorted(SMOKE_INPUTS))
def test_every_model_maps_batch_to_logits(name):
    torch.manual_seed(0)
    chans, size = SMOKE_INPUTS[name]
    model = create_model(name, num_classes=10, in_chans=chans, image_size=size).eval()
    with torch.no_grad():
        logits = model(torch.rand(2, chans, size, size))
    assert isinstance(model, NormalizedClassifier)
    assert logits.shape == (2, 10)
    assert torch.isfinite(logits).all()


def test_normalisation_buffers_are_persistent_and_follow_dtype():
    model = create_model("madry_cnn", 10, in_chans=3, mean=IMAGENET_MEAN, std=IMAGENET_STD, image_size=28)
    state = model.state_dict()
    assert state["mean"].shape == (1, 3, 1, 1)
    assert torch.allclose(state["std"].flatten(), torch.tensor(IMAGENET_STD))
    model = model.to(torch.float64)
    assert model.mean.dtype == torch.float64 and model.std.dtype == torch.float64


def test_wrapper_equals_bare_net_on_normalised_input():
    torch.manual_seed(0)
    model = create_model("madry_cnn", 10, in_chans=3, mean=IMAGENET_MEAN, std=IMAGENET_STD, image_size=28).eval()
    x = torch.rand(2, 3, 28, 28)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        wrapped, bare, unnormalised = model(x), model.net((x - mean) / std), model.net(x)
    torch.testing.assert_close(wrapped, bare)
    assert not torch.allclose(wrapped, unnormalised)


def test_grayscale_input_is_repeated_to_rgb_for_torchvision_nets():
    torch.manual_seed(0)
    model = create_model("resnet18", 10, in_chans=1, mean=IMAGENET_MEAN, std=IMAGENET_STD).eval()
    x = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), model(x.repeat(1, 3, 1, 1)))


def test_incompatible_channels_and_stats_raise():
    model = create_model("preact_resnet18", 10, in_chans=3)
    with pytest.raises(ValueError, match="channels"):
        model(torch.rand(1, 2, 32, 32))
    with pytest.raises(RobustnoiseError, match="mean"):
        create_model("madry_cnn", 10, in_chans=1, mean=IMAGENET_MEAN, image_size=28)
    with pytest.raises(RobustnoiseError, match="in_chans"):
        create_model("resnet18", 10, in_chans=4)


@pytest.fixture(scope="module")
def resnet18_state():
    torch.manual_seed(1)
    return torchvision.models.resnet18(weights=None).state_dict()


def _assert_net_equals(model: NormalizedClassifier, state: dict) -> None:
    loaded = model.net.state_dict()
    assert loaded.keys() == state.keys()
    for key, value in state.items():
        assert torch.equal(loaded[key], value), key


@pytest.mark.parametrize("prefix", ["", "module."])
def test_loads_game_of_noise_release_layout(tmp_path, resnet18_state, prefix):
    path = tmp_path / "ANT_Model.pth"
    payload = {f"{prefix}{k}": v for k, v in resnet18_state.items()}
    torch.save({"model_state_dict": payload, "epoch": 3, "optimizer_state_dict": {"state": {}}}, path)
    model = create_model("resnet18", 1000, mean=IMAGENET_MEAN, std=IMAGENET_STD, weights=str(path))
    _assert_net_equals(model, resnet18_state)
    # The model's own normalisation is kept.
    assert torch.allclose(model.mean.flatten(), torch.tensor(IMAGENET_MEAN))


def test_loads_lightning_checkpoint_ignoring_other_modules(tmp_path, resnet18_state):
    state = {f"classifier.net.{k}": v for k, v in resnet18_state.items()}
    state["classifier.mean"] = torch.full((1, 3, 1, 1), 0.3)
    state["classifier.std"] = torch.full((1, 3, 1, 1), 0.7)
    state["generator.conv1.weight"] = torch.zeros(3, 3, 3, 3)
    path = tmp_path / "last.ckpt"
    torch.save({"state_dict": state, "epoch": 5, "global_step": 10}, path)
    model = create_model("resnet18", 1000, mean=(0.5,), std=(0.25,))
    load_classifier_weights(model, path)
    _assert_net_equals(model, resnet18_state)
    assert torch.equal(model.mean, torch.full((1, 1, 1, 1), 0.5))


def test_densenet_head_key_survives_prefix_stripping(tmp_path):
    source = create_model("densenet121", 10)
    torch.save({"state_dict": {f"classifier.{k}": v for k, v in source.state_dict().items()}}, tmp_path / "d.ckpt")
    target = create_model("densenet121", 10)
    load_classifier_weights(target, tmp_path / "d.ckpt")
    assert torch.equal(target.net.classifier.weight, source.net.classifier.weight)


def test_other_architecture_gives_one_line_checkpoint_error(tmp_path):
    path = tmp_path / "preact.pth"
    torch.save(create_model("preact_resnet18", 10).net.state_dict(), path)
    with pytest.raises(CheckpointError) as info:
        create_model("resnet18", 10, weights=str(path))
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message and "ResNet" in message and "missing keys" in message


def test_shape_mismatch_gives_one_line_checkpoint_error(tmp_path):
    path = tmp_path / "cifar100.pth"
    torch.save(create_model("preact_resnet18", 100).net.state_dict(), path)
    with pytest.raises(CheckpointError, match=r"linear\.weight.*\(100, 512\).*\(10, 512\)") as info:
        create_model("preact_resnet18", 10, weights=str(path))
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_missing_and_unreadable_files_give_checkpoint_error(tmp_path):
    missing = tmp_path / "nope.pth"
    with pytest.raises(CheckpointError, match="nope.pth"):
        create_model("madry_cnn", 10, in_chans=1, image_size=28, weights=str(missing))
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="garbage.pth") as info:
        create_model("madry_cnn", 10, in_chans=1, image_size=28, weights=str(garbage))
    assert "\n" not in str(info.value)


def test_unknown_model_name_lists_known_names():
    with pytest.raises(RobustnoiseError) as info:
        create_model("vit_huge", 10)
    assert "vit_huge" in str(info.value)
    assert all(name in str(info.value) for name in list_models())


def test_unknown_torchvision_weights_enum_raises():
    with pytest.raises(RobustnoiseError, match="NOT_AN_ENUM.*IMAGENET1K_V1"):
        create_model("resnet50", 10, weights="torchvision:NOT_AN_ENUM")
    with pytest.raises(RobustnoiseError, match="torchvision"):
        create_model("preact_resnet18", 10, weights="torchvision")


@pytest.mark.parametrize(
    ("spec", "expected"), [("torchvision", "IMAGENET1K_V1"), ("torchvision:IMAGENET1K_V2", "IMAGENET1K_V2")]
)
def test_torchvision_weights_request_enum_and_replace_head(monkeypatch, spec, expected):
    requested = []

    def fake_resnet50(weights=None, **kwargs):
        # Stand-in for the download: a random 1000-class net, as torchvision would return with weights.
        requested.append(weights)
        return torchvision.models.resnet18(weights=None, **kwargs)

    monkeypatch.setattr(torchvision.models, "resnet50", fake_resnet50)
    model = create_model("resnet50", 10, weights=spec)
    assert requested == [torchvision.models.ResNet50_Weights[expected]]
    assert model.net.fc.out_features == 10
    assert model.eval()(torch.rand(1, 3, 32, 32)).shape == (1, 10)


def test_inception_torchvision_weights_drop_aux_head(monkeypatch):
    kwargs_seen = {}
    real_inception = torchvision.models.inception_v3

    def fake_inception(weights=None, **kwargs):
        kwargs_seen.update(kwargs)
        return real_inception(weights=None, init_weights=False, aux_logits=kwargs["aux_logits"])

    monkeypatch.setattr(torchvision.models, "inception_v3", fake_inception)
    model = create_model("inception_v3", 10, weights="torchvision")
    assert kwargs_seen["aux_logits"] is True
    assert model.net.AuxLogits is None and model.net.aux_logits is False
    assert model.net.fc.out_features == 10
    assert model.train()(torch.rand(2, 3, 75, 75)).shape == (2, 10)


def test_preact_resnet_stem_and_size():
    net = create_model("preact_resnet18", 10).net
    assert net.conv1.kernel_size == (3, 3) and net.conv1.stride == (1, 1) and net.conv1.out_channels == 64
    assert not any(isinstance(m, nn.MaxPool2d) for m in net.modules())
    n_params = sum(p.numel() for p in net.parameters())
    assert abs(n_params - 11.17e6) / 11.17e6 < 0.01
    first_block = net.layer1[0]
    assert first_block.shortcut is None and net.layer2[0].shortcut is not None


def test_stylized_imagenet_release_layout_loads(tmp_path):
    """texture-vs-shape's SIN ResNet-50 files: {"epoch", "arch", "state_dict": {"module.<torchvision key>"}, ...}."""
    net = torchvision.models.resnet18(num_classes=1000)
    path = tmp_path / "resnet50_train_60_epochs-c8e5653e.pth.tar"
    state = {f"module.{k}": v for k, v in net.state_dict().items()}
    torch.save({"epoch": 60, "arch": "resnet18", "state_dict": state, "optimizer": {"state": {}}}, path)
    model = create_model("resnet18", 1000, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    load_classifier_weights(model, path)
    for name, value in net.state_dict().items():
        assert torch.equal(model.net.state_dict()[name], value), name
