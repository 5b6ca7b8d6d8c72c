"""Issue 13 for models and bundles: non-finite numbers, demo notices, bundle checks, pickles.

Items 2 (NaN/Inf is an error naming the file), 6 (demo bundles say so on every result),
11 (pickles refused without suggesting the unsafe load), 14 (grade/her2net ``--out``),
15 (bundle manifests validated), 20 (``--mpp``; no self-contradicting message) and 22
(each bundle states what it accepts; the CLI refuses or warns).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from her2viewer.cli import main
from her2viewer.errors import ModelError
from her2viewer.models.bundle import load_bundle
from her2viewer.models.checks import DEMO_NOTICE, check_slide_scope, require_finite
from her2viewer.models.clam import (
    CLAM,
    ClamConfig,
    demo_clam_bundle_path,
    load_clam,
    load_clam_checkpoint,
    predict,
    save_clam_bundle,
)
from her2viewer.models.her2net.model import demo_bundle_path
from her2viewer.models.patch_cnn import default_grading_bundle, load_patch_cnn

SMALL = dict(embed_dim=12, hidden_dim=8, attention_dim=4)


def _error(capsys) -> str:
    """The one stderr line of a failed verb."""
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    return lines[0]


@pytest.fixture()
def clam_bundle(tmp_path) -> Path:
    return save_clam_bundle(
        tmp_path / "clam", CLAM(ClamConfig(**SMALL)), {"class_names": ["a", "b"]}
    )


def _features(path: Path, features: np.ndarray) -> Path:
    with h5py.File(path, "w") as h5:
        h5["features"] = features
    return path


def _edit_manifest(folder: Path, change) -> Path:
    manifest = json.loads((folder / "bundle.json").read_text())
    change(manifest)
    (folder / "bundle.json").write_text(json.dumps(manifest))
    return folder


def _manifest_only(tmp_path: Path, source: Path, change) -> Path:
    """A copy of a demo bundle's manifest (no weights), changed by ``change``."""
    folder = tmp_path / f"m-{source.name}"
    folder.mkdir()
    shutil.copy(source / "bundle.json", folder / "bundle.json")
    return _edit_manifest(folder, change)


# --------------------------------------------------------------------------- item 15
def _set(*keys_value):
    *keys, value = keys_value

    def change(manifest):
        target = manifest
        for key in keys[:-1]:
            target = target[key]
        target[keys[-1]] = value

    return change


def _drop(*keys):
    def change(manifest):
        target = manifest
        for key in keys[:-1]:
            target = target[key]
        del target[keys[-1]]

    return change


CLAM_CASES = [
    (_set("schema_version", "abc"), "schema_version"),
    (_set("schema_version", None), "schema_version"),
    (_set("config", "dropout", float("nan")), "config.dropout"),
    (_set("config", "n_classes", -2), "config.n_classes"),
    (_set("config", "embed_dim", 10**9), "config.embed_dim"),
    (_set("config", "embed_dim", 24), "config.embed_dim"),  # valid but not what the weights say
    (_drop("config"), "config"),
]


@pytest.mark.parametrize(("change", "field"), CLAM_CASES)
def test_clam_manifest_errors_name_the_field(clam_bundle, change, field):
    _edit_manifest(clam_bundle, change)
    with pytest.raises(ModelError, match=f"config|{field}") as info:
        load_clam(clam_bundle)
    assert field in str(info.value) and str(clam_bundle) in str(info.value)


HER2NET_CASES = [
    (_drop("segmenter"), "segmenter"),
    (_drop("integrated", "spec"), "integrated.spec"),
    (_set("tile_size", "x"), "tile_size"),
    (_set("input_size", 0), "input_size"),
    (_set("magnification", float("inf")), "magnification"),
]
GRADING_CASES = [
    (_set("input_size", 0), "input_size"),
    (_set("classes", ["3+"]), "classes"),
]


@pytest.mark.parametrize(("change", "field"), HER2NET_CASES)
def test_her2net_manifest_errors_name_the_field(tmp_path, change, field):
    folder = _manifest_only(tmp_path, demo_bundle_path(), change)
    with pytest.raises(ModelError, match="bundle.json") as info:
        load_bundle(folder)
    assert f"'{field}'" in str(info.value)


@pytest.mark.parametrize(("change", "field"), GRADING_CASES)
def test_grading_manifest_errors_name_the_field(tmp_path, change, field):
    folder = _manifest_only(tmp_path, default_grading_bundle(), change)
    with pytest.raises(ModelError, match="bundle.json") as info:
        load_patch_cnn(folder)
    assert f"'{field}'" in str(info.value)


def test_bad_manifest_is_one_line_on_the_cli(clam_bundle, tmp_path, capsys):
    _edit_manifest(clam_bundle, _set("config", "embed_dim", "x"))
    features = _features(tmp_path / "f.h5", np.zeros((3, 12), np.float32))
    assert main(["clam", "infer", "--model", str(clam_bundle), "--features", str(features)]) == 2
    assert "config.embed_dim" in _error(capsys)


def test_other_kind_is_named_without_contradiction(tmp_path):
    with pytest.raises(ModelError) as info:
        load_clam(default_grading_bundle())
    assert "'patch_cnn' bundle; this needs a 'clam' bundle" in str(info.value)


# --------------------------------------------------------------------------- item 2
def test_nan_weights_are_an_error_naming_the_file(clam_bundle):
    from safetensors.torch import load_file, save_file

    weights = clam_bundle / "model.safetensors"
    state = load_file(str(weights))
    state["classifiers.weight"][0, 0] = float("nan")
    save_file(state, str(weights))
    with pytest.raises(ModelError, match="model.safetensors holds NaN or infinite"):
        load_clam(clam_bundle)


def test_nan_checkpoint_is_an_error(tmp_path):
    state = CLAM(ClamConfig(**SMALL)).state_dict()
    state["classifiers.weight"][0, 0] = float("inf")
    torch.save(state, tmp_path / "s_0_checkpoint.pt")
    with pytest.raises(ModelError, match="s_0_checkpoint.pt holds NaN or infinite"):
        load_clam_checkpoint(tmp_path / "s_0_checkpoint.pt")


def test_huge_features_give_an_error_not_a_class(tmp_path, capsys):
    features = np.random.default_rng(0).random((20, 1024)).astype(np.float32)
    features[3] = 3e38
    path = _features(tmp_path / "huge.h5", features)
    model = str(demo_clam_bundle_path())
    assert main(["clam", "infer", "--model", model, "--features", str(path)]) == 2
    line = _error(capsys)
    assert "huge.h5" in line and "NaN or infinite" in line


def test_non_finite_features_in_memory_are_refused():
    model = CLAM(ClamConfig(**SMALL))
    features = np.ones((4, 12), np.float32)
    features[1, 2] = np.nan
    with pytest.raises(ModelError, match="Features file a.h5 holds NaN"):
        predict(model, features, "Features file a.h5")


def test_require_finite_is_silent_on_finite_and_integer_values():
    require_finite(np.arange(4), "x")
    require_finite(torch.ones(3), "x")
    with pytest.raises(ModelError, match="^y holds NaN"):
        require_finite(torch.tensor([1.0, float("-inf")]), "y")


# --------------------------------------------------------------------------- item 11
@pytest.mark.parametrize("verb", ["clam", "grade"])
def test_pickles_are_refused_without_suggesting_the_unsafe_load(tmp_path, capsys, verb):
    evil = tmp_path / "evil.pt"
    torch.save({"a": object}, evil)
    if verb == "clam":
        features = _features(tmp_path / "f.h5", np.zeros((3, 12), np.float32))
        args = ["clam", "infer", "--model", str(evil), "--features", str(features)]
    else:
        args = ["grade", "predict", str(tmp_path / "x.png"), "--model", str(evil)]
        args += ["--arch", "resnet34"]
        _png(tmp_path / "x.png")
    assert main(args) == 2
    line = _error(capsys)
    assert "evil.pt is refused for safety" in line and "state_dict" in line
    assert "weights_only" not in line and "likely succeed" not in line


def _png(path: Path) -> Path:
    import cv2

    cv2.imwrite(str(path), np.full((64, 64, 3), 200, np.uint8))
    return path


# --------------------------------------------------------------------------- item 22
def test_demo_bundles_state_what_they_accept():
    for path, stain in (
        (demo_clam_bundle_path(), "H&E"),
        (demo_bundle_path(), "H&E"),
        (default_grading_bundle(), "HER2 IHC"),
    ):
        meta = load_bundle(path).meta
        assert meta["synthetic"] is True
        assert meta["accepts"]["stain"] == stain
        assert meta["accepts"]["pixel_size_required"] is True


class _Info:
    def __init__(self, mpp, power, path="slide.png"):
        self.mpp_x, self.magnification, self.path = mpp, power, path


def test_scope_refuses_a_missing_pixel_size_and_warns_off_range():
    meta = load_bundle(default_grading_bundle()).meta
    with pytest.raises(ModelError, match="slide.png records no pixel size.*--mpp"):
        check_slide_scope(meta, _Info(None, None), "the demo")
    warning = check_slide_scope(meta, _Info(2.0, 5.0), "the demo")
    assert "5x" in warning and "20x to 40x" in warning and "\n" not in warning
    assert check_slide_scope(meta, _Info(0.5, 20.0), "the demo") is None
    assert check_slide_scope({}, _Info(None, None), "a model") is None


def test_demo_notice_text():
    assert DEMO_NOTICE == "synthetic demo model, no clinical meaning"


# --------------------------------------------------------------------------- item 6
def test_clam_infer_with_the_demo_says_so_on_the_result_line(tmp_path, capsys):
    features = np.random.default_rng(1).random((6, 1024)).astype(np.float32)
    path = str(_features(tmp_path / "f.h5", features))
    model = str(demo_clam_bundle_path())
    assert main(["clam", "infer", "--model", model, "--features", path, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["notice"] == DEMO_NOTICE
    assert main(["clam", "infer", "--model", model, "--features", path]) == 0
    result = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("prediction:")]
    assert DEMO_NOTICE in result[0]


def test_a_real_bundle_has_no_notice(clam_bundle, tmp_path, capsys):
    path = str(_features(tmp_path / "f.h5", np.ones((3, 12), np.float32)))
    assert main(["clam", "infer", "--model", str(clam_bundle), "--features", path, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["notice"] is None


# ------------------------------------------------------------------ items 6, 14, 20, 22 on slides
def _gray_png(path: Path, side: int = 600) -> Path:
    import cv2

    cv2.imwrite(str(path), np.full((side, side, 3), 128, np.uint8))
    return path


def test_her2net_demo_result_carries_the_notice(synthetic_case, tmp_path, capsys):
    slide = str(synthetic_case / "he.svs")
    assert main(["her2net", "predict", slide, "--json", "--out", str(tmp_path / "o")]) == 0
    assert json.loads(capsys.readouterr().out)["notice"] == DEMO_NOTICE
    assert json.loads((tmp_path / "o" / "her2net.json").read_text())["notice"] == DEMO_NOTICE
    assert main(["her2net", "predict", slide, "--out", str(tmp_path / "o")]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith("HER2 ") and DEMO_NOTICE in first


def test_her2net_needs_a_pixel_size_and_takes_mpp(tmp_path, capsys):
    png = str(_gray_png(tmp_path / "plain.png"))
    assert main(["her2net", "predict", png]) == 2
    line = _error(capsys)
    assert "plain.png records no pixel size" in line and "--mpp" in line
    out = str(tmp_path / "o")
    assert main(["her2net", "predict", png, "--mpp", "0.5", "--json", "--out", out, "--quiet"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["notice"] == DEMO_NOTICE and captured.err == ""
    assert main(["her2net", "predict", png, "--mpp", "2", "--out", out, "--quiet"]) == 0
    warning = capsys.readouterr().err.strip()
    assert warning.startswith("Warning: plain.png is at 5x") and "\n" not in warning
    assert main(["her2net", "predict", png, "--mpp", "nan"]) == 2
    assert "--mpp" in _error(capsys)


def test_her2net_out_on_a_file_is_one_sentence(tmp_path, capsys):
    png = str(_gray_png(tmp_path / "plain.png"))
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for out in (blocker, blocker / "sub"):
        assert main(["her2net", "predict", png, "--mpp", "0.5", "--out", str(out)]) == 2
        assert str(out) in _error(capsys)
    assert blocker.read_text() == "x"


def test_her2net_out_on_a_full_disk_leaves_nothing_half_written(tiny_disk, tmp_path, capsys):
    from tests.reliability.conftest import fill_disk, last_line_error, leftovers

    png = str(_gray_png(tmp_path / "plain.png"))
    disk = tiny_disk(256)
    out = disk / "o"
    out.mkdir()
    fill_disk(disk, 0)
    assert main(["her2net", "predict", png, "--mpp", "0.5", "--out", str(out)]) == 2
    assert "disk is full" in last_line_error(capsys)  # after the tiles' progress
    assert leftovers(disk) == [] and not (out / "her2net.json").exists()


def test_grade_refuses_a_slide_without_pixel_size(tmp_path, capsys):
    png = str(_gray_png(tmp_path / "ki67.png"))
    assert main(["grade", "predict", png]) == 2
    line = _error(capsys)
    assert "ki67.png records no pixel size" in line and "--mpp" in line


def test_grade_out_checked_before_the_work(tmp_path, capsys):
    png = str(_gray_png(tmp_path / "x.png"))
    assert main(["grade", "predict", png, "--mpp", "0.5", "--out", str(tmp_path)]) == 2
    assert "it is a folder" in _error(capsys)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["grade", "predict", png, "--out", str(blocker / "g.json")]) == 2
    assert "it is a file" in _error(capsys)


def test_grade_demo_says_so_on_the_grade_line(synthetic_cohort, tmp_path, capsys):
    slide = str(synthetic_cohort.parent / "case000" / "ihc.svs")
    out = tmp_path / "g.json"
    assert main(["grade", "predict", slide, "--limit", "3", "--out", str(out)]) == 0
    grade = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("grade:")]
    assert DEMO_NOTICE in grade[0]
    saved = json.loads(out.read_text())
    assert saved["notice"] == DEMO_NOTICE and saved["warning"] is None


def test_nan_grading_head_is_an_error(tmp_path):
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "grading"
    shutil.copytree(default_grading_bundle(), folder)
    state = load_file(str(folder / "head.safetensors"))
    state["weight"][:] = float("nan")
    save_file(state, str(folder / "head.safetensors"))
    with pytest.raises(ModelError, match="head.safetensors holds NaN or infinite"):
        load_patch_cnn(folder)


def test_evaluate_refuses_non_finite_probabilities(tmp_path):
    from her2viewer.errors import EvaluationError
    from her2viewer.training.evaluate import read_predictions

    path = tmp_path / "p.csv"
    path.write_text("case_id,truth,prediction,probability\na,pos,pos,0.9\nb,neg,neg,nan\n")
    with pytest.raises(EvaluationError, match="Predictions file p.csv holds NaN"):
        read_predictions(path)


def test_ihc_mil_refuses_non_finite_features():
    from her2viewer.analysis.ihc_mil import IhcAttentionMIL, predict_mil

    features = np.ones((3, 512), np.float32)
    features[0, 0] = np.inf
    with pytest.raises(ModelError, match="tile features of s.svs holds NaN"):
        predict_mil(IhcAttentionMIL(), features, "s.svs")


def test_save_bundle_on_a_full_disk_is_one_sentence(tiny_disk):
    from her2viewer.errors import OutputError
    from her2viewer.models.bundle import save_bundle
    from tests.reliability.conftest import fill_disk

    disk = tiny_disk(128)
    fill_disk(disk, 0)
    for name in ("b", "b.zip"):
        with pytest.raises(OutputError, match="disk is full"):
            save_bundle(disk / name, {"model_kind": "x"}, {"model": {"w": torch.ones(50000)}})
    assert sorted(p.name for p in disk.iterdir()) == [".filler"]


def test_clam_heatmap_of_a_demo_bundle_carries_the_notice(synthetic_case, tmp_path):
    from torch import nn

    from her2viewer.analysis.clam import ClamOptions, analyse_clam
    from her2viewer.features.encoders import torchscript_encoder
    from her2viewer.slide import open_slide

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    torch.jit.script(net.eval()).save(str(tmp_path / "enc.pt"))
    model = CLAM(ClamConfig(embed_dim=8, hidden_dim=16, attention_dim=8))
    bundle = save_clam_bundle(tmp_path / "b", model, {"synthetic": True})
    options = ClamOptions(magnification=5.0, patch_size=32, device="cpu", workers=1)
    encoder = torchscript_encoder(tmp_path / "enc.pt", input_size=16)
    with open_slide(synthetic_case / "he.svs") as slide:
        result = analyse_clam(slide, bundle, options, encoder=encoder, cache=tmp_path / "cache")
    assert result.notice == DEMO_NOTICE


def _write_manifest(folder: Path, manifest: dict) -> Path:
    folder.mkdir()
    (folder / "bundle.json").write_text(json.dumps({"schema_version": 1, **manifest}))
    return folder


def test_mil_and_encoder_records_are_checked(tmp_path):
    from her2viewer.analysis.ihc_mil import load_mil

    mil = {"model_kind": "ihc_attention_mil", "architecture": {"in_dim": 0, "hidden": 8}}
    with pytest.raises(ModelError, match="'architecture.in_dim'"):
        load_mil(_write_manifest(tmp_path / "mil", mil))
    clam = {"model_kind": "x", "encoder": {"name": "resnet50_trunc", "provenance": {"seed": "x"}}}
    with pytest.raises(ModelError, match="'encoder.provenance.seed'"):
        load_bundle(_write_manifest(tmp_path / "enc", clam))


def test_evaluate_and_gradcam_outputs_checked_first(tmp_path, capsys):
    png = str(_gray_png(tmp_path / "x.png"))
    cohort = str(tmp_path / "labels.csv")
    assert main(["her2net", "evaluate", "--cohort", cohort, "-o", str(tmp_path)]) == 2
    assert "it is a folder" in _error(capsys)
    assert main(["grade", "gradcam", png, "--mpp", "0.5", "--out", str(tmp_path)]) == 2
    assert "it is a folder" in _error(capsys)
