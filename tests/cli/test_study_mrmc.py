"""`study mrmc`, `study sample-size` and the MRMC part of `study report`.

A synthetic 4-reader x 2-arm study is read through the reading session API (each reader's
confidence drawn around the truth, the assisted arm sharper), then analysed by the verbs
and reported.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from her2viewer.cli import main
from her2viewer.study.access import OWNER_ENV
from her2viewer.study.reading import ReadingSession
from her2viewer.study.report import write_report
from her2viewer.study.store import StudyStore
from tests.study_util import make_study

VANDYKE = Path(__file__).resolve().parents[1] / "data" / "mrmc" / "vandyke.csv"
READERS = ("ann", "ben", "cat", "dan")
SHARPNESS = {"unassisted": 0.8, "assisted": 1.3}


def _read(path: Path, arms=("unassisted", "assisted"), readers=READERS, skip=None) -> None:
    """Answer every case as each reader, with a 0-100 confidence of a positive case."""
    rng = np.random.default_rng(3)
    for reader in readers:
        skill = rng.uniform(0.7, 1.3)
        for arm in arms:
            with ReadingSession(path, reader, arm) as session:
                for position in range(session.total):
                    if (reader, arm, position) == skip:
                        continue
                    # the simulated reader peeks at the case id, which reveals the truth
                    positive = "HER2POS" in session._case_row(position)[0]
                    signal = skill * SHARPNESS[arm] * (1 if positive else -1) + rng.normal()
                    probability = 100 / (1 + np.exp(-signal))
                    answer = "positive" if probability >= 50 else "negative"
                    session.answer(position, answer, round(probability, 1), 10.0)


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    path = make_study(tmp_path_factory.mktemp("mrmc"), n=24, confidence="0-100")
    _read(path)
    return path


def _json(capsys, *args) -> dict:
    assert main(list(args)) == 0
    return json.loads(capsys.readouterr().out)


def test_mrmc_json_on_a_ratings_csv(capsys, tmp_path):
    out = _json(capsys, "study", "mrmc", str(VANDYKE), "--json", "--imrmc",
                str(tmp_path / "vd.imrmc"), "--long-csv", str(tmp_path / "vd.csv"))  # fmt: skip
    assert out["auc"]["1"]["1"] == pytest.approx(0.91964573, abs=5e-9)
    assert set(out["rrrc"]) >= {"f", "df1", "df2", "p", "difference", "stderr", "ci_low", "ci_high"}
    assert set(out["frrc"]) >= {"chi2", "p", "stderr", "ci_low", "ci_high"}
    assert round(out["rrrc"]["f"], 2) == 4.46 and round(out["frrc"]["chi2"], 5) == 5.47595
    assert "BEGIN DATA:" in (tmp_path / "vd.imrmc").read_text()
    assert (tmp_path / "vd.csv").read_text().startswith("reader,modality,case,truth,rating")


def test_mrmc_text_and_sample_size(capsys):
    assert main(["study", "mrmc", str(VANDYKE)]) == 0
    text = capsys.readouterr().out
    assert "F = 4.456, df 1 and 15.26, p = 0.0517" in text
    plan = _json(capsys, "study", "sample-size", str(VANDYKE), "--effect", "0.05",
                 "--readers", "5,10", "--json")  # fmt: skip
    assert [p["readers"] for p in plan["plans"]] == [5, 10]
    assert plan["plans"][0]["cases"] > plan["plans"][1]["cases"] and plan["pilot"]["cases"] == 114


def test_mrmc_of_a_study_file_compares_the_arms_and_the_model(capsys, study):
    out = _json(capsys, "study", "mrmc", str(study), "--json")
    assert out["design"]["modalities"] == ["unassisted", "assisted"]
    assert sorted(out["auc"]) == list(READERS)
    assert out["modality_means"]["assisted"] > out["modality_means"]["unassisted"]
    assert out["rrrc"]["difference"] < 0 and 0 <= out["rrrc"]["p"] <= 1
    assert [d["modalities"] for d in out["readers_vs_model"]] == [
        ["unassisted", "model"],
        ["assisted", "model"],
    ]
    accuracy = _json(capsys, "study", "mrmc", str(study), "--json", "--fom", "accuracy")
    assert "auc" not in accuracy and 0 < accuracy["fom"]["ann"]["assisted"] <= 1


def test_a_one_arm_study_compares_the_readers_with_the_model(capsys, tmp_path):
    path = make_study(tmp_path, n=12, arms=("unassisted",), confidence="0-100")
    _read(path, arms=("unassisted",), readers=READERS[:3])
    out = _json(capsys, "study", "mrmc", str(path), "--json")
    assert out["design"]["modalities"] == ["unassisted", "model"]
    assert len({row["model"] for row in out["auc"].values()}) == 1


def test_report_holds_the_mrmc_table_figure_and_plan(study, tmp_path):
    summary = write_report(study, tmp_path / "report", n_boot=50)
    block = summary["mrmc"]
    assert block["rrrc"]["df2"] > 0 and block["sample_size"]["plans"][0]["readers"] == 4
    out = tmp_path / "report"
    assert (out / "mrmc.png").stat().st_size > 0
    assert (out / "mrmc_fom.csv").read_text().count("\n") == 1 + 4 * 2
    html = (out / "report.html").read_text()
    for text in ("Obuchowski-Rockette tests", "random readers, random cases", "Sample size"):
        assert text in html
    assert json.loads((out / "summary.json").read_text())["mrmc"]["fom"] == block["fom"]


def test_report_says_why_there_is_no_mrmc(tmp_path):
    path = make_study(tmp_path, n=8, confidence="0-100")
    _read(path, readers=READERS[:2], skip=("ben", "assisted", 3))
    summary = write_report(path, tmp_path / "report", n_boot=20)
    assert "split-plot" in summary["mrmc"]["unavailable"]
    assert "No MRMC analysis" in (tmp_path / "report" / "report.html").read_text()


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--fom", "sensitivity"], ("needs --threshold",)),
        (["--covariance", "delong", "--fom", "accuracy", "--threshold", "3"], ("delong",)),
    ],
)
def test_option_errors_are_one_line(capsys, args, fragments):
    assert main(["study", "mrmc", str(VANDYKE), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and all(f in err for f in fragments)


def test_a_partially_read_study_is_refused_in_one_line(capsys, tmp_path):
    path = make_study(tmp_path, n=8, confidence="0-100")
    _read(path, readers=READERS[:2], skip=("ann", "unassisted", 0))
    assert main(["study", "mrmc", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "reader 'ann' has no rating of case" in err
    assert "in modality 'unassisted'; split-plot" in err


def test_a_study_without_confidence_needs_a_proportion_fom(capsys, tmp_path):
    path = make_study(tmp_path, n=8)
    with ReadingSession(path, "ann", "unassisted") as session:
        session.answer(0, "positive")
    assert main(["study", "mrmc", str(path)]) == 2
    assert "has no confidence rating" in capsys.readouterr().err


def test_a_protected_study_needs_the_owner_secret(capsys, study, tmp_path, monkeypatch):
    path = tmp_path / "protected.h2study"
    shutil.copy(study, path)
    with StudyStore(path) as store:
        store.unlock(None, "protect")
        store.protect("owner words")
    monkeypatch.delenv(OWNER_ENV, raising=False)
    for secret in (None, "wrong words"):
        if secret:
            monkeypatch.setenv(OWNER_ENV, secret)
        for verb in (["mrmc"], ["sample-size", "--effect", "0.05"]):
            assert main(["study", *verb, str(path), "--json"]) == 2
            err = capsys.readouterr().err.strip()
            assert "\n" not in err and "secret" in err
    monkeypatch.setenv(OWNER_ENV, "owner words")
    assert _json(capsys, "study", "mrmc", str(path), "--json")["design"]["cases"] == 24
