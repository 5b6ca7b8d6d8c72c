"""The test run is quiet: a local Ray cluster starts without its token-authentication notice."""

from __future__ import annotations

import os

import pytest

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
