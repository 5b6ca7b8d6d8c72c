"""The analysis contract: every analysis returns a result with layers, summary, save/load.

Each of the four analyses runs once (module fixtures) on the small synthetic case with
its demo bundle; its result must give layers, a JSON summary, and survive a save/load
and a pickle round trip (a background job may run it in a worker process).
"""

from __future__ import annotations

import json
import pickle
from functools import partial

import numpy as np
import pytest

from her2viewer.analysis.cells import CellsOptions, CellsResult, analyse_cells
from her2viewer.analysis.clam import ClamOptions, ClamResult, analyse_clam
from her2viewer.analysis.contract import analyse_path
from her2viewer.analysis.grade import GradeOptions, GradeResult, analyse_grade
from her2viewer.analysis.her2net import Her2NetResult, analyse_her2net
from her2viewer.analysis.ihc import IhcResult, analyse_ihc
from her2viewer.analysis.ihc_pair import IhcPairOptions, IhcPairResult, analyse_ihc_pair
from her2viewer.jobs import JobContext
from her2viewer.models.clam import demo_clam_bundle_path
from her2viewer.models.her2net.model import demo_bundle_path
from her2viewer.models.patch_cnn import default_grading_bundle

CASES = {
    "clam": (
        lambda case: (analyse_clam, case / "he.svs", demo_clam_bundle_path(),
                      ClamOptions(device="cpu", workers=1)),
        ClamResult,
        "clam.npz",
    ),
    "her2net": (
        lambda case: (analyse_her2net, case / "he.svs", demo_bundle_path(), None),
        Her2NetResult,
        "her2net",
    ),
    "ihc": (lambda case: (analyse_ihc, case / "ihc.svs", None, None), IhcResult, "ihc.npz"),
    "cells": (
        lambda case: (analyse_cells, case / "ihc.svs", None, CellsOptions(outlines=False)),
        CellsResult,
        "cells.npz",
    ),
    "ihc_pair": (
        lambda case: (analyse_ihc_pair, case / "he.svs", None,
                      IhcPairOptions(str(case / "ihc.svs"))),
        IhcPairResult,
        "pair.npz",
    ),
    "grade": (
        lambda case: (analyse_grade, case / "ihc.svs", default_grading_bundle(),
                      GradeOptions(limit=6, device="cpu")),
        GradeResult,
        "grade.json",
    ),
}  # fmt: skip


@pytest.fixture(scope="module", params=sorted(CASES))
def analysed(request, synthetic_case):
    """``(name, result, result class, file name)`` of one analysis on the synthetic case."""
    build, cls, filename = CASES[request.param]
    analyse, path, bundle, options = build(synthetic_case)
    progress = []
    context = JobContext(listeners=[progress.append])
    result = analyse_path(analyse, path, bundle, options, context)
    return request.param, result, cls, filename, progress


def _same(a, b) -> None:
    """Equal summaries and equal arrays (NaN equal to NaN) of two results."""
    assert json.dumps(a.summary(), sort_keys=True) == json.dumps(b.summary(), sort_keys=True)
    for name, value in vars(a).items():
        if isinstance(value, np.ndarray):
            np.testing.assert_array_equal(value, getattr(b, name), err_msg=name)


def test_result_has_the_contract(analysed):
    name, result, cls, _, progress = analysed
    assert isinstance(result, cls)
    assert result.layers(), name
    json.dumps(result.summary())  # JSON-serialisable as it is
    assert progress or name == "her2net"  # a cached HER2Net result reports nothing


def test_save_load_round_trip(analysed, tmp_path):
    _, result, cls, filename, _ = analysed
    back = cls.load(result.save(tmp_path / filename))
    assert isinstance(back, cls)
    _same(result, back)
    assert [layer.name for layer in back.layers()] == [layer.name for layer in result.layers()]


def test_pickle_round_trip(analysed):
    _, result, cls, _, _ = analysed
    _same(result, pickle.loads(pickle.dumps(result)))


def test_contract_functions_pickle_as_partials(synthetic_case):
    for build, _, _ in CASES.values():
        analyse, path, bundle, options = build(synthetic_case)
        work = partial(analyse_path, analyse, path, bundle, options)
        assert pickle.loads(pickle.dumps(work)).func is analyse_path
