"""The test run is quiet: a local Ray cluster starts without its token-authentication notice,
TorchScript files are made and loaded without torch's deprecation notices, and no other
warning is hidden on the way."""

from __future__ import annotations

import os
import warnings

import pytest
import torch
from torch import nn

from her2viewer.cells.detect import load_detector
from her2viewer.cells.profiles import NucleusProfile
from her2viewer.features.encoders import torchscript_encoder
from her2viewer.project.engines import run_ray

pytestmark = pytest.mark.slow


def test_a_local_ray_cluster_starts_quietly_with_token_authentication_on(capfd, monkeypatch):
    pytest.importorskip("ray")
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)  # Ray's default, as a user has it
    run_ray([], lambda outcomes: None, workers=1, address=None, gpus_per_task=0)
    err = capfd.readouterr().err
    assert "Token authentication" not in err, err
    assert "WARNING" not in err, err
    assert os.environ.get("RAY_AUTH_MODE") == "token"  # Ray turned it on: nothing opted out


def _encoder_net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten()).eval()


def test_making_torchscript_files_in_the_tests_gives_no_notice(tmp_path):
    with warnings.catch_warnings(record=True) as caught:  # the run's filters (pyproject's)
        torch.jit.script(_encoder_net()).save(str(tmp_path / "a.pt"))
        torch.jit.save(torch.jit.script(_encoder_net()), str(tmp_path / "b.pt"))
    assert [str(w.message) for w in caught] == []


def test_loading_torchscript_ignores_only_the_jit_load_notice(tmp_path, monkeypatch):
    torch.jit.script(_encoder_net()).save(str(tmp_path / "enc.pt"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert torchscript_encoder(tmp_path / "enc.pt", input_size=16).dim == 4
        load_detector(tmp_path / "enc.pt", NucleusProfile(), model_mpp=0.5)
    assert [str(w.message) for w in caught] == []
    real_load = torch.jit.load

    def load_and_warn(*args, **kwargs):
        warnings.warn(
            "`torch.jit.load` is deprecated. Please switch to `torch.export`.",
            FutureWarning,
            stacklevel=2,
        )
        warnings.warn("a notice about this very file", FutureWarning, stacklevel=2)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch.jit, "load", load_and_warn)
    for load in (
        lambda: torchscript_encoder(tmp_path / "enc.pt", input_size=16),
        lambda: load_detector(tmp_path / "enc.pt", NucleusProfile(), model_mpp=0.5),
    ):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            load()
        assert [str(w.message) for w in caught] == ["a notice about this very file"]
