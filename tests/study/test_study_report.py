"""Report generation: summary.json numbers, CSV per figure, PNGs, self-contained HTML, CLI."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from study_util import make_study, write_csv

from her2viewer.cli import main
from her2viewer.stats import metrics as m
from her2viewer.study.report import write_report
from her2viewer.study.stats import reader_score
from her2viewer.study.store import StudyStore

ERROR_RATE = {"unassisted": 0.35, "assisted": 0.15}


def _fill(path, rng, readers=("ann", "ben", "cat"), error=ERROR_RATE):
    """Answer every case by every reader in both arms, wrong with the arm's error rate."""
    with StudyStore(path) as store:
        truth = store.truth()
        labels = store.question.labels
        for reader in readers:
            store.ensure_reader(reader)
            for arm in ("unassisted", "assisted"):
                for case_id, t in sorted(truth.items()):
                    wrong = rng.random() < error[arm]
                    answer = rng.choice([x for x in labels if x != t]) if wrong else t
                    confidence = None
                    if store.question.confidence == "0-100":
                        confidence = float(rng.integers(55, 100))
                        if answer == "negative":
                            confidence = 100 - confidence
                    store.record_answer(
                        reader, arm, case_id, answer, confidence, float(rng.uniform(5, 90))
                    )


def test_report_status_study(tmp_path):
    path = make_study(tmp_path, n=30, confidence="0-100")
    _fill(path, np.random.default_rng(0))
    summary = write_report(path, tmp_path / "report", n_boot=300)
    out = tmp_path / "report"
    for name in (
        "summary.json",
        "report.html",
        "answers.csv",
        "metrics.csv",
        "mcnemar.csv",
        "roc.png",
        "roc.csv",
        "reading_time.png",
        "reading_time.csv",
        "confusion_model.png",
        "confusion_model.csv",
        "confusion_ann_assisted.png",
    ):
        assert (out / name).is_file(), name  # fmt: skip
    assert json.loads((out / "summary.json").read_text()) == summary
    # model: wrong on case 0 only (see study_util)
    model = summary["model"]
    assert model["binary"]["accuracy"]["value"] == pytest.approx(29 / 30)
    assert model["auc"]["method"] == "delong"
    # every reader-arm against a direct recomputation
    with StudyStore(path) as store:
        truth, preds = store.truth(), store.predictions()
        answers = store.answers()
        question = store.question
    for block in summary["readers"]:
        mine = {
            a.case_id: a for a in answers if (a.reader, a.arm) == (block["reader"], block["arm"])
        }
        cases = sorted(mine)
        t = [truth[c] == "positive" for c in cases]
        p = [mine[c].answer == "positive" for c in cases]
        assert block["binary"]["sensitivity"]["value"] == pytest.approx(
            sum(a and b for a, b in zip(t, p, strict=True)) / sum(t)
        )
        scores = [reader_score(question, mine[c].answer, mine[c].confidence) for c in cases]
        assert block["auc"]["value"] == pytest.approx(m.auc_delong(t, scores).value)
    for row in summary["reader_vs_model"]:
        mine = {a.case_id: a for a in answers if (a.reader, a.arm) == (row["reader"], row["arm"])}
        model_ok = [preds[c][0] == truth[c] for c in sorted(mine)]
        reader_ok = [mine[c].answer == truth[c] for c in sorted(mine)]
        expected = m.mcnemar(model_ok, reader_ok)
        assert row["table"] == [list(r) for r in expected.table]
        assert row["p_value"] == pytest.approx(expected.p_value)
    assert {f["arm"] for f in summary["fleiss"]} == {"unassisted", "assisted"}
    for f in summary["fleiss"]:
        assert f["kappa"]["low"] <= f["kappa"]["value"] <= f["kappa"]["high"]
    assert len(summary["reader_vs_reader"]) == 6  # 3 pairs x 2 arms
    assert {c["reader"] for c in summary["assisted_vs_unassisted"]} == {"ann", "ben", "cat"}
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 1 + 1 + 6 + 1 + 1  # + time, MRMC
    assert "Reader vs model" in html and "<img" in html
    with (out / "roc.csv").open() as handle:
        series = {row["series"] for row in csv.DictReader(handle)}
    assert "model" in series and "ann (assisted)" in series


def test_report_ihc_score_uses_quadratic_kappa(tmp_path):
    path = make_study(tmp_path, n=20, question="ihc_score", arms=("unassisted",))
    rng = np.random.default_rng(1)
    with StudyStore(path) as store:
        for reader in ("ann", "ben"):
            store.ensure_reader(reader)
            for case_id, t in store.truth().items():
                store.record_answer(reader, "unassisted", case_id, rng.choice(["0", "1+", "2+", t]))
    summary = write_report(path, tmp_path / "r", n_boot=200)
    (pair,) = summary["reader_vs_reader"]
    assert pair["weights"] == "quadratic"
    with StudyStore(path) as store:
        a = {x.case_id: x.answer for x in store.answers() if x.reader == "ann"}
        b = {x.case_id: x.answer for x in store.answers() if x.reader == "ben"}
    keys = sorted(a)
    expected = m.cohen_kappa([a[k] for k in keys], [b[k] for k in keys], ["0", "1+", "2+", "3+"],
                             "quadratic")  # fmt: skip
    assert pair["kappa"]["value"] == pytest.approx(expected)
    block = summary["readers"][0]
    assert block["multiclass"]["kappa_weights"] == "quadratic"
    assert "binary" in block  # 2+/3+ count as positive
    assert summary["assisted_vs_unassisted"] == []


def test_report_from_synthetic_cohort_via_cli(tmp_path, synthetic_cohort, capsys):
    """End to end on the synthetic paired cohort: its labels.csv is the cases CSV as is."""
    with synthetic_cohort.open() as handle:
        rows = list(csv.DictReader(handle))
    truth = write_csv(tmp_path / "truth.csv", "case_id,truth",
                      [f"{r['case_id']},{r['ihc_score']}+" if r["ihc_score"] != "0"
                       else f"{r['case_id']},0" for r in rows])  # fmt: skip
    preds = write_csv(tmp_path / "preds.csv", "case_id,prediction",
                      [f"{r['case_id']},2+" for r in rows])  # fmt: skip
    answers = write_csv(tmp_path / "answers.csv", "reader,case_id,answer,seconds",
                        [f"{who},{r['case_id']},{s},{10 + i}" for i, r in enumerate(rows)
                         for who, s in (("ann", "1+"), ("ben", "3+"))])  # fmt: skip
    study = tmp_path / "cohort.h2study"
    argv = ["study", "create", str(study), "--cases", str(synthetic_cohort), "--question"]
    argv += ["ihc_score", "--truth", str(truth), "--model-predictions", str(preds)]
    assert main(argv) == 0
    assert "no slide file" not in capsys.readouterr().out
    assert main(["study", "import", str(study), str(answers)]) == 0
    assert main(["study", "report", str(study), "-o", str(tmp_path / "rep"),
                 "--bootstrap", "100"]) == 0  # fmt: skip
    summary = json.loads((tmp_path / "rep" / "summary.json").read_text())
    assert summary["study"]["n_cases"] == len(rows) and summary["study"]["missing_slides"] == []
    assert {r["reader"] for r in summary["readers"]} == {"ann", "ben"}
    assert summary["readers"][0]["reading_time"]["n"] == len(rows)


def test_report_lists_missing_slides_and_handles_no_answers(tmp_path):
    path = make_study(tmp_path, n=4)  # no slide files
    summary = write_report(path, tmp_path / "r", n_boot=50)
    assert len(summary["study"]["missing_slides"]) == 4
    assert summary["readers"] == [] and summary["reader_vs_model"] == []
    assert "have no slide file" in (tmp_path / "r" / "report.html").read_text()
