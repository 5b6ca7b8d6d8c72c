"""Encoders: CLAM's resnet50_trunc, weight sources, TorchScript files and the registry hook."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from safetensors.torch import save_file
from torch import nn
from torchvision import transforms

from her2viewer.errors import ModelError
from her2viewer.features.encoders import (
    Encoder,
    build_encoder,
    encoder_for_bundle,
    encoder_names,
    register_encoder,
    resnet50_trunc,
    torchscript_encoder,
    torchvision_cache_file,
)


@pytest.fixture(scope="module")
def torchvision_state(tmp_path_factory):
    """A full torchvision ResNet-50 state dict (seeded random weights) saved as .pth."""
    torch.manual_seed(3)
    net = torchvision.models.resnet50(weights=None).eval()
    path = tmp_path_factory.mktemp("w") / "resnet50-custom.pth"
    torch.save(net.state_dict(), path)
    return net, path


def test_resnet50_trunc_matches_torchvision_layers(torchvision_state):
    net, path = torchvision_state
    enc = resnet50_trunc(weights=path)
    assert enc.dim == 1024 and enc.input_size == 224
    assert (
        enc.provenance["weights"] == "resnet50-custom.pth" and len(enc.provenance["sha256"]) == 64
    )
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        trunk = nn.Sequential(
            net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3
        )
        expected = trunk(x).mean(dim=(2, 3))
        got = enc.module(x)
    assert got.shape == (2, 1024)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def test_preprocessing_matches_clam_eval_transforms():
    enc = resnet50_trunc(random_seed=0)
    tile = np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    clam = transforms.Compose(
        [transforms.Resize(224), transforms.ToTensor(), transforms.Normalize(enc.mean, enc.std)]
    )
    expected = clam(Image.fromarray(tile))[None]
    got = enc.normalise(torch.from_numpy(np.array(enc.prepare_tile(tile)))[None])
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
    legacy = resnet50_trunc(random_seed=0, legacy_256=True)
    assert legacy.input_size is None and legacy.prepare_tile(tile) is tile


def test_random_weights_are_seeded_and_recorded():
    a, b, c = (resnet50_trunc(random_seed=s) for s in (5, 5, 6))
    wa, wb, wc = (e.module.conv1.weight for e in (a, b, c))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)
    assert a.provenance == {"weights": "random", "seed": 5}
    assert a.identity != c.identity


def test_missing_weights_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    assert not torchvision_cache_file().exists()
    with pytest.raises(
        ModelError, match="No ImageNet weights for resnet50_trunc.*--encoder-weights"
    ):
        build_encoder("resnet50_trunc")
    with pytest.raises(ModelError, match="not found"):
        build_encoder("resnet50_trunc", weights=tmp_path / "none.pth")


def test_weights_from_torchvision_cache_and_safetensors(tmp_path, monkeypatch, torchvision_state):
    net, _ = torchvision_state
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    cache = torchvision_cache_file()
    cache.parent.mkdir(parents=True)
    torch.save(net.state_dict(), cache)
    from_cache = build_encoder("resnet50_trunc")
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, tmp_path / "w.safetensors")
    from_st = build_encoder("resnet50_trunc", weights=tmp_path / "w.safetensors")
    assert torch.equal(
        from_cache.module.layer3[0].conv1.weight, from_st.module.layer3[0].conv1.weight
    )


def test_wrong_weights_file(tmp_path):
    torch.save({"conv1.weight": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(ModelError, match="not a torchvision ResNet-50"):
        resnet50_trunc(weights=tmp_path / "bad.pth")
    torch.save({"x": object}, tmp_path / "pickle.pth")
    with pytest.raises(ModelError, match="pickle.pth is refused for safety"):
        resnet50_trunc(weights=tmp_path / "pickle.pth")


def test_torchscript_encoder_and_errors(tmp_path):
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    torch.jit.script(net).save(str(tmp_path / "ts.pt"))
    enc = build_encoder(f"torchscript:{tmp_path / 'ts.pt'}", input_size=32)
    assert enc.dim == 4 and enc.input_size == 32
    (tmp_path / "junk.pt").write_bytes(b"not a zip")
    with pytest.raises(ModelError, match="not a TorchScript file"):
        torchscript_encoder(tmp_path / "junk.pt")
    torch.jit.script(nn.Conv2d(3, 4, 3)).save(str(tmp_path / "map.pt"))
    with pytest.raises(ModelError, match="batch, features"):
        torchscript_encoder(tmp_path / "map.pt")
    with pytest.raises(ModelError, match="not found"):
        torchscript_encoder(tmp_path / "none.pt")


def test_registry_hook_and_unknown_name():
    def tiny_foundation(weights=None, random_seed=None):
        torch.manual_seed(random_seed or 0)
        return Encoder(
            "tiny_fm",
            nn.Sequential(nn.Flatten(), nn.LazyLinear(6)),
            6,
            16,
            provenance={"weights": "random", "seed": random_seed},
        )

    register_encoder("tiny_fm", tiny_foundation)
    assert "tiny_fm" in encoder_names() and "resnet50_trunc" in encoder_names()
    assert build_encoder("tiny_fm", random_seed=1).dim == 6
    with pytest.raises(ModelError, match="Unknown encoder 'uni2'.*resnet50_trunc"):
        build_encoder("uni2")


def test_encoder_for_bundle(torchvision_state):
    net, _ = torchvision_state
    random_enc = resnet50_trunc(random_seed=9, legacy_256=True)
    rebuilt = encoder_for_bundle({"encoder": random_enc.describe()})
    assert rebuilt.identity == random_enc.identity
    meta = {"encoder": {"name": "resnet50_trunc", "input_size": 224}}
    from_tensors = encoder_for_bundle(meta, {"encoder": net.state_dict()})
    assert torch.equal(from_tensors.module.conv1.weight, net.conv1.weight)
    with pytest.raises(ModelError, match="does not say which encoder"):
        encoder_for_bundle({})
