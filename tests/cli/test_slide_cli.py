"""The info and demo-data verbs."""

from __future__ import annotations

import json
import subprocess
import sys

from her2viewer.cli import main


def test_info_json(cmu_svs, capsys):
    assert main(["info", str(cmu_svs), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["vendor"] == "aperio"
    assert data["width"] == 2220 and data["height"] == 2967
    assert data["levels"] == [{"width": 2220, "height": 2967, "downsample": 1.0}]
    assert data["objective_power"] == 20
    assert abs(data["mpp_x"] - 0.499) < 1e-3
    assert sorted(data["associated_images"]) == ["label", "macro", "thumbnail"]


def test_info_text(cmu_svs, capsys):
    assert main(["info", str(cmu_svs)]) == 0
    out = capsys.readouterr().out
    assert "aperio" in out and "2220 x 2967" in out


def test_info_without_objective_power_is_null(tmp_path, capsys):
    from PIL import Image

    path = tmp_path / "core.png"
    Image.new("RGB", (64, 64), (200, 100, 150)).save(path)
    assert main(["info", str(path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["objective_power"] is None and data["mpp_x"] is None


def test_python_dash_m_and_demo_data(tmp_path):
    out = tmp_path / "cohort"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "her2viewer",
            "demo-data",
            str(out),
            "--cases",
            "1",
            "--size",
            "1024x768",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert (out / "labels.csv").exists() and (out / "case000" / "he.svs").exists()


def test_demo_data_rejects_bad_size(tmp_path, capsys):
    try:
        main(["demo-data", str(tmp_path), "--size", "big"])
    except SystemExit as exc:
        assert exc.code == 2
    assert "size must look like" in capsys.readouterr().err
