"""MRMC analysis (Obuchowski-Rockette, DBM, sample size) against OR-DBM MRMC's Van Dyke output.

Every figure listed in tests/data/mrmc/README.md is compared to the digits it is printed
with there (a printed 4.46 must round to 4.46).
"""

from __future__ import annotations

import csv
import dataclasses
import math
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest

from her2viewer.errors import OutputError
from her2viewer.stats.delong import auc_variance, jackknife_covariance
from her2viewer.stats.mrmc import (
    MrmcError,
    Ratings,
    averaged_roc,
    figures_of_merit,
    mrmc,
    power,
    read_ratings,
    sample_size,
    write_imrmc,
    write_long_csv,
)
from tests.reliability.conftest import fill_disk, leftovers, tiny_disk  # noqa: F401

DATA = Path(__file__).resolve().parents[1] / "data" / "mrmc" / "vandyke.csv"

#: OR-DBM MRMC 2.5's printed AUCs, reader -> (modality 1, modality 2).
PRINTED_AUC = {
    "1": ("0.91964573", "0.94782609"), "2": ("0.85877617", "0.90531401"),
    "3": ("0.90386473", "0.92173913"), "4": ("0.97310789", "0.99935588"),
    "5": ("0.82979066", "0.92995169"),
}  # fmt: skip
PRINTED_COMPONENTS = {
    "ms_t": "0.00479617", "ms_r": "0.00383620", "ms_tr": "0.00055103", "var_r": "0.00153500",
    "var_tr": "0.00020040", "cov1": "0.00034661", "cov2": "0.00034407", "cov3": "0.00023903",
    "var_error": "0.00080229",
}  # fmt: skip


def printed(value: float, text: str) -> bool:
    """Whether ``value`` rounds to ``text`` at the number of decimals ``text`` is printed with."""
    decimals = -Decimal(text).as_tuple().exponent
    return abs(value - float(text)) <= 0.5 * 10.0**-decimals + 1e-12


@pytest.fixture(scope="module")
def vandyke() -> Ratings:
    return read_ratings(DATA)


@pytest.fixture(scope="module")
def result(vandyke) -> dict:
    return mrmc(vandyke)


def test_aucs_and_means_as_printed(result):
    for reader, texts in PRINTED_AUC.items():
        for modality, text in zip(("1", "2"), texts, strict=True):
            assert printed(result["fom"][reader][modality], text)
    means = result["modality_means"]
    assert printed(means["1"], "0.89703704") and printed(means["2"], "0.94083736")
    assert printed(result["rrrc"]["differences"][0]["difference"], "-0.04380032")


def test_or_anova_and_variance_components_as_printed(result):
    for name, text in PRINTED_COMPONENTS.items():
        assert printed(result["components"][name], text), name


def test_random_readers_random_cases_as_printed(result):
    rrrc = result["rrrc"]
    assert printed(rrrc["f"], "4.46") and rrrc["df1"] == 1 and printed(rrrc["df2"], "15.26")
    assert printed(rrrc["p"], "0.0517")
    diff = rrrc["differences"][0]
    assert printed(diff["difference"], "-0.04380") and printed(diff["stderr"], "0.02075")
    assert printed(diff["ci_low"], "-0.08796") and printed(diff["ci_high"], "0.00036")
    one, two = rrrc["modalities"]
    assert printed(one["fom"], "0.89703704") and printed(one["df"], "12.74")
    assert printed(one["ci_low"], "0.82522360") and printed(one["ci_high"], "0.96885048")
    assert printed(two["fom"], "0.94083736") and printed(two["df"], "12.71")
    assert printed(two["ci_low"], "0.89413783") and printed(two["ci_high"], "0.98753689")


def test_fixed_readers_random_cases_as_printed(result):
    frrc = result["frrc"]
    assert printed(frrc["chi2"], "5.47595") and frrc["df"] == 1 and printed(frrc["p"], "0.0193")
    diff = frrc["differences"][0]
    assert printed(diff["stderr"], "0.01872")
    assert printed(diff["ci_low"], "-0.08049") and printed(diff["ci_high"], "-0.00711")


def test_random_readers_fixed_cases_is_the_interaction_test(result):
    comp, rrfc = result["components"], result["rrfc"]
    assert rrfc["f"] == pytest.approx(comp["ms_t"] / comp["ms_tr"])
    assert (rrfc["df1"], rrfc["df2"]) == (1, 4)
    assert rrfc["differences"][0]["stderr"] == pytest.approx(math.sqrt(2 * comp["ms_tr"] / 5))


def test_dbm_on_pseudovalues_crosschecks_or(result):
    dbm, rrrc = result["dbm"], result["rrrc"]
    assert dbm["f"] == pytest.approx(rrrc["f"], rel=1e-10)
    assert dbm["df2"] == pytest.approx(rrrc["df2"], rel=1e-10)
    assert dbm["p"] == pytest.approx(rrrc["p"], rel=1e-8)
    assert dbm["ms"]["t"] == pytest.approx(114 * result["components"]["ms_t"], rel=1e-10)


def test_jackknife_is_delong_modules_and_delong_covariance_has_delong_variances(vandyke):
    values, loo = figures_of_merit(vandyke)
    d = (loo - loo.mean(axis=2, keepdims=True)).reshape(10, 114)
    reference = jackknife_covariance(vandyke.truth, vandyke.values.reshape(10, 114))
    np.testing.assert_allclose(113 / 114 * d @ d.T, reference, rtol=1e-10)
    delong = mrmc(vandyke, covariance="delong")
    assert delong["rrrc"]["f"] != pytest.approx(mrmc(vandyke)["rrrc"]["f"])
    var = np.mean([auc_variance(vandyke.truth, s)[1] for s in vandyke.values.reshape(10, 114)])
    assert delong["components"]["var_error"] == pytest.approx(var)


@pytest.mark.parametrize("fom", ["sensitivity", "specificity", "accuracy"])
def test_proportion_foms_leave_one_out_by_refitting(vandyke, fom):
    values, loo = figures_of_merit(vandyke, fom, threshold=3)
    calls, truth = vandyke.values >= 3, vandyke.truth
    counted = {"sensitivity": truth, "specificity": ~truth, "accuracy": np.ones(114, bool)}[fom]

    def proportion(keep):
        use = counted & keep
        return ((calls == truth)[..., use]).mean(axis=2)

    np.testing.assert_allclose(values, proportion(np.ones(114, bool)))
    for k in (0, 5, 113):
        keep = np.ones(114, bool)
        keep[k] = False
        np.testing.assert_allclose(loo[..., k], proportion(keep))
    assert mrmc(vandyke, fom, threshold=3)["dbm"]["f"] == pytest.approx(
        mrmc(vandyke, fom, threshold=3)["rrrc"]["f"]
    )


def _rows() -> list[dict]:
    return list(csv.DictReader(DATA.open()))


def test_partially_paired_design_is_refused_naming_the_missing_reading():
    missing = {"reader": "3", "case": "7", "modality": "2"}
    rows = [r for r in _rows() if any(r[k] != v for k, v in missing.items())]
    with pytest.raises(MrmcError, match=r"reader '3' has no rating of case '7' in modality '2'"):
        Ratings.from_rows(rows, "vd.csv")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"truth": "yes"}, "truth must be 0"),
        ({"rating": "nan"}, "rating must be a finite number"),
        ({"truth": "1", "case": "0"}, "two different truths"),
        ({"reader": " "}, "reader, modality and case must be given"),
    ],
)
def test_bad_rows_are_one_sentence(change, message):
    rows = _rows()
    rows[0] = {**rows[0], **change}
    with pytest.raises(MrmcError, match=message) as info:
        Ratings.from_rows(rows, "vd.csv")
    assert str(info.value).startswith("vd.csv line ") and "\n" not in str(info.value)


def test_design_errors():
    rows = _rows()
    with pytest.raises(MrmcError, match="twice"):
        Ratings.from_rows(rows + rows[:1], "vd.csv")
    with pytest.raises(MrmcError, match="2 modalities and 2 readers"):
        Ratings.from_rows([r for r in rows if r["modality"] == "1"], "vd.csv")
    few = [r for r in rows if r["truth"] == "0" or r["case"] in ("3", "4")]
    few = [r for r in few if r["case"] != "4" or r["truth"] == "0"]
    with pytest.raises(MrmcError, match="2 positive and 2 negative"):
        Ratings.from_rows(few, "vd.csv")


def test_option_errors(vandyke):
    with pytest.raises(MrmcError, match="needs --threshold"):
        mrmc(vandyke, "sensitivity")
    with pytest.raises(MrmcError, match="delong exists for --fom auc only"):
        mrmc(vandyke, "accuracy", "delong", threshold=3)


def test_power_of_the_pilot_itself_has_its_f_as_noncentrality(result):
    effect = result["rrrc"]["differences"][0]["difference"]
    _, noncentrality, df2 = power(result["components"], 114, 5, 114, effect)
    assert noncentrality == pytest.approx(result["rrrc"]["f"])
    assert df2 == pytest.approx(result["rrrc"]["df2"])


def test_sample_size_is_the_fewest_cases_reaching_the_power(result):
    plans = sample_size(result["components"], 114, 0.05, [3, 5, 10])
    assert plans[0]["cases"] is None and plans[0]["power"] < 0.8
    for plan in plans[1:]:
        n = plan["cases"]
        assert power(result["components"], 114, plan["readers"], n, 0.05)[0] >= 0.8
        assert power(result["components"], 114, plan["readers"], n - 1, 0.05)[0] < 0.8
    assert plans[1]["cases"] > plans[2]["cases"]


def test_averaged_roc_runs_from_corner_to_corner(vandyke):
    curves = averaged_roc(vandyke)
    for curve in curves.values():
        assert curve["tpr"][-1] == 1.0 and np.all(np.diff(curve["tpr"]) >= 0)
    assert np.mean(curves["2"]["tpr"]) > np.mean(curves["1"]["tpr"])


def test_exports_round_trip_and_imrmc_layout(vandyke, tmp_path):
    back = read_ratings(write_long_csv(vandyke, tmp_path / "long.csv"))
    np.testing.assert_array_equal(back.values, vandyke.values)
    lines = write_imrmc(vandyke, tmp_path / "vd.imrmc").read_text().splitlines()
    assert {"NR: 5", "N0: 69", "N1: 45", "NM: 2"} <= set(lines)
    data = lines[lines.index("BEGIN DATA:") + 1 :]
    assert len(data) == 114 + 1140 and data[0] == "-1,1,0,0"
    assert data[114] == "1,1,1,1"


def test_imrmc_refuses_a_name_with_a_comma(vandyke, tmp_path):
    named = dataclasses.replace(vandyke, readers=("a,b", "2", "3", "4", "5"))
    with pytest.raises(MrmcError, match="holds a comma"):
        write_imrmc(named, tmp_path / "x.imrmc")
    assert not list(tmp_path.iterdir())


def test_exports_on_a_full_disk_leave_nothing(vandyke, tiny_disk):  # noqa: F811
    folder = tiny_disk(64)
    fill_disk(folder, 2048)
    for writer, name in ((write_long_csv, "long.csv"), (write_imrmc, "vd.imrmc")):
        with pytest.raises(OutputError, match=name):
            writer(vandyke, folder / name)
    assert not leftovers(folder) and not (folder / "long.csv").exists()


def test_a_reference_rated_alike_for_every_reader_is_hillis_single_modality_of_differences(
    vandyke,
):
    """The model-as-a-modality design of a one-arm study equals the analysis of differences."""
    model = np.broadcast_to(vandyke.values[1, 0], (5, 114))
    data = dataclasses.replace(vandyke, values=np.stack([vandyke.values[0], model]))
    diff = mrmc(data)["rrrc"]["differences"][0]
    values, loo = figures_of_merit(data)
    d, d_loo = values[0] - values[1], loo[0] - loo[1]
    dev = d_loo - d_loo.mean(axis=1, keepdims=True)
    cov = 113 / 114 * dev @ dev.T
    cov2 = cov[~np.eye(5, dtype=bool)].mean()
    ms_r = d.var(ddof=1)
    assert diff["stderr"] == pytest.approx(np.sqrt((ms_r + 5 * max(cov2, 0)) / 5))
    assert diff["df"] == pytest.approx((ms_r + 5 * cov2) ** 2 / (ms_r**2 / 4))
