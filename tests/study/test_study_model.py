"""``study create --model``: a CLAM bundle answers cases; its heatmap is an assisted-arm layer."""

from __future__ import annotations

import csv
import sqlite3

import numpy as np
import pytest
import torch
from torch import nn

from her2viewer.analysis.clam import ClamOptions
from her2viewer.errors import StudyError
from her2viewer.features.encoders import torchscript_encoder
from her2viewer.models.clam import CLAM, ClamConfig, save_clam_bundle
from her2viewer.study.definition import CaseRow, load_cases, make_question
from her2viewer.study.model import predict_cases
from her2viewer.study.reading import ReadingSession
from her2viewer.study.store import StudyStore

OPTIONS = ClamOptions(magnification=5.0, patch_size=32, device="cpu", workers=1)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    root = tmp_path_factory.mktemp("study_model")
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                        nn.Flatten())  # fmt: skip
    torch.jit.script(net.eval()).save(str(root / "enc.pt"))
    model = CLAM(ClamConfig(embed_dim=8, hidden_dim=16, attention_dim=8))
    good = save_clam_bundle(root / "good", model, {"class_names": ["negative", "positive"]})
    odd = save_clam_bundle(root / "odd", model, {"class_names": ["benign", "malignant"]})
    return torchscript_encoder(root / "enc.pt", input_size=16), good, odd


@pytest.fixture(scope="module")
def model_study(tmp_path_factory, synthetic_cohort, tiny_model):
    encoder, bundle, _ = tiny_model
    question = make_question("status")
    cases = load_cases(synthetic_cohort)[:1]
    cases.append(CaseRow("noslide", "/nonexistent/he.svs", ""))
    predictions, overlays, skipped = predict_cases(cases, question, bundle, OPTIONS, encoder)
    path = tmp_path_factory.mktemp("ms") / "model.h2study"
    with synthetic_cohort.open() as handle:
        truth = {r["case_id"]: r["her2_status"] for r in csv.DictReader(handle)}
    truth = {c.case_id: truth.get(c.case_id, "negative") for c in cases}
    StudyStore.create(path, question, cases, truth, predictions, ["unassisted", "assisted"],
                      seed=1, overlays=overlays).close()  # fmt: skip
    return path, predictions, overlays, skipped


def test_predictions_and_overlays(model_study):
    path, predictions, overlays, skipped = model_study
    assert skipped == ["noslide"]
    assert set(predictions) == set(overlays) and len(predictions) == 1
    for label, probability in predictions.values():
        assert label in ("negative", "positive") and 0.0 <= probability <= 1.0
        assert (label == "positive") == (probability >= 0.5)
    with StudyStore(path) as store:
        assert store.predictions() == predictions


def test_overlay_only_in_assisted_arm(model_study):
    path, _, overlays, _ = model_study
    with ReadingSession(path, "ann", "unassisted") as session:
        assert all(session.model_overlay(i) is None for i in range(session.total))
        with pytest.raises(sqlite3.DatabaseError, match="prohibited|not authorized"):
            session._store.conn.execute("SELECT scores FROM model_overlays").fetchall()
    with ReadingSession(path, "ann", "assisted") as session:
        found = [session.model_overlay(i) for i in range(session.total)]
    shown = [o for o in found if o is not None]
    assert len(shown) == 1
    expected = sorted(np.nansum(o.scores) for o in overlays.values())
    assert sorted(np.nansum(o.scores) for o in shown) == pytest.approx(expected)


def test_bundle_classes_must_match_question(synthetic_cohort, tiny_model):
    encoder, _, odd = tiny_model
    cases = load_cases(synthetic_cohort)[:1]
    with pytest.raises(StudyError, match="do not match the study's answers"):
        predict_cases(cases, make_question("status"), odd, OPTIONS, encoder)


def test_assisted_window_shows_model_heatmap_layer(qtbot, model_study):
    from her2viewer.gui.study.window import ReadingWindow
    from her2viewer.gui.tiles import TileCache, TileLoader

    path, _, _, _ = model_study
    loader = TileLoader(TileCache(64), workers=1)
    session = ReadingSession(path, "bea", "assisted")
    with_slide = next(i for i in range(session.total) if session.case(i).slide_available)
    window = ReadingWindow(session, loader, confirm_leave=lambda w: True)
    qtbot.addWidget(window)
    window.go_to(with_slide)
    qtbot.waitUntil(lambda: window.model_layer is not None, timeout=20000)
    assert window.model_layer in window.views[0].layers
    assert window.show_model_layer.isEnabled()
    window.show_model_layer.setChecked(False)
    assert not window.model_layer.visible
    window.close()
    loader.shutdown()
