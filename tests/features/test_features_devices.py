"""The one device-choice function: auto -> CUDA, then MPS, then CPU; clear errors."""

from __future__ import annotations

import pytest
import torch

from her2viewer import devices
from her2viewer.devices import choose_device
from her2viewer.errors import ModelError


def test_auto_prefers_cuda_then_mps_then_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(devices, "_mps_available", lambda: True)
    assert choose_device("auto").type == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert choose_device("auto").type == "mps"
    monkeypatch.setattr(devices, "_mps_available", lambda: False)
    assert choose_device("auto") == torch.device("cpu")
    assert choose_device(torch.device("cpu")) == torch.device("cpu")


def test_unavailable_or_unknown_devices(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(devices, "_mps_available", lambda: False)
    with pytest.raises(ModelError, match="no CUDA GPU is available; use --device cpu"):
        choose_device("cuda:0")
    with pytest.raises(ModelError, match="MPS was asked for"):
        choose_device("mps")
    with pytest.raises(ModelError, match="Unknown device 'gpu0'"):
        choose_device("gpu0")
    with pytest.raises(ModelError, match="Unsupported device 'meta'"):
        choose_device("meta")
