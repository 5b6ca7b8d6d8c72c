"""Probe fixes of issue 13 for clam, grade, her2net, demo-data and ``--threads``.

Every numeric option is refused at parse time in one line naming it (exit 2), before
any file is read or torch is loaded; the deprecated ``patchcnn`` spelling keeps errors
to one line.
"""

from __future__ import annotations

import pytest

from her2viewer.cli import main
from her2viewer.cli.main import build_parser
from tests.reliability.conftest import one_line_error

CLAM_TRAIN = ["clam", "train", "--features-dir", "f", "--labels", "l.csv", "-o", "out"]
CLAM_HEATMAP = ["clam", "heatmap", "s.svs", "--model", "m", "-o", "h.png"]
GRADE_TRAIN = ["grade", "train", "labels.csv", "-o", "bundle"]
GRADE_PREDICT = ["grade", "predict", "s.svs"]
GRADCAM = ["grade", "gradcam", "s.svs", "-o", "cam.npy"]
HER2NET_TRAIN = ["her2net", "train", "--cohort", "c.csv", "-o", "bundle"]
HER2NET_PREDICT = ["her2net", "predict", "s.svs"]
HER2NET_EVALUATE = ["her2net", "evaluate", "--cohort", "c.csv"]

BAD_OPTIONS = [
    (CLAM_TRAIN, "--dropout", "1"),
    (CLAM_TRAIN, "--dropout", "-0.1"),
    (CLAM_TRAIN, "--lr", "0"),
    (CLAM_TRAIN, "--lr", "nan"),
    (CLAM_TRAIN, "--lr", "inf"),
    (CLAM_TRAIN, "--weight-decay", "-1e-5"),
    (CLAM_TRAIN, "--k-sample", "0"),
    (CLAM_TRAIN, "--seed", "-1"),
    (CLAM_TRAIN, "--bag-weight", "1.5"),
    (CLAM_TRAIN, "--folds", "2"),
    (CLAM_TRAIN, "--max-epochs", "0"),
    (CLAM_TRAIN, "--patience", "-3"),
    (CLAM_TRAIN, "--threads", "0"),
    (CLAM_TRAIN, "--threads", "1000000000000"),
    (CLAM_HEATMAP, "--binarize", "2"),
    (GRADE_TRAIN, "--input-size", "0"),
    (GRADE_TRAIN, "--input-size", "100000"),
    (GRADE_TRAIN, "--seed", "-1"),
    (GRADE_TRAIN, "--scores", "1,x"),
    (GRADE_TRAIN, "--scores", "2,2"),
    (GRADE_TRAIN, "--scores", "4,5"),
    (GRADE_TRAIN, "--epochs", "0"),
    (GRADE_TRAIN, "--lr", "-1"),
    (GRADE_TRAIN, "--step", "0"),
    (GRADE_TRAIN, "--batch-size", "0"),
    (GRADE_TRAIN, "--limit", "0"),
    (GRADE_PREDICT, "--limit", "-5"),
    (GRADCAM, "--downsample", "nan"),
    (GRADCAM, "--downsample", "0.5"),
    (GRADCAM, "--rect", "nan,0,10,10"),
    (GRADCAM, "--rect", "5,5,1,1"),
    (HER2NET_PREDICT, "--threshold", "150"),
    (HER2NET_PREDICT, "--threshold", "nan"),
    (HER2NET_PREDICT, "--threshold", "-1"),
    (HER2NET_EVALUATE, "--threads", "1000000000000"),
    (HER2NET_TRAIN, "--lr", "0"),
    (HER2NET_TRAIN, "--tile-size", "0"),
    (HER2NET_TRAIN, "--input-size", "8"),
    (HER2NET_TRAIN, "--seg-depth", "100"),
    (HER2NET_TRAIN, "--seg-width", "0"),
    (HER2NET_TRAIN, "--cls-epochs", "-1"),
    (HER2NET_TRAIN, "--magnification", "nan"),
    (HER2NET_TRAIN, "--batch-size", "0"),
]


@pytest.mark.parametrize(("base", "option", "value"), BAD_OPTIONS)
def test_bad_numeric_option_is_one_line_at_parse_time(base, option, value, capsys):
    with pytest.raises(SystemExit) as exc:
        main([*base, f"{option}={value}"])
    assert exc.value.code == 2
    one_line_error(capsys, f"argument {option}")


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--cases", "0"),
        ("--cases", "100000"),
        ("--seed", "-1"),
        ("--size", "100x100"),
        ("--size", "1000000x1000"),
        ("--workers", "0"),
    ],
)
def test_demo_data_refuses_bad_numbers_before_writing(option, value, tmp_path, capsys):
    out = tmp_path / "cohort"
    with pytest.raises(SystemExit) as exc:
        main(["demo-data", str(out), option, value])
    assert exc.value.code == 2
    one_line_error(capsys, f"argument {option}")
    assert not out.exists()


def test_valid_edges_parse_to_checked_values():
    parser = build_parser()
    cam = parser.parse_args([*GRADCAM, "--rect", "0,0,10,10", "--downsample", "1"])
    assert cam.rect == (0.0, 0.0, 10.0, 10.0) and cam.downsample == 1.0
    train = parser.parse_args([*GRADE_TRAIN, "--scores", "0,3", "--input-size", "32"])
    assert train.scores == (0, 3) and train.input_size == 32
    assert parser.parse_args(GRADE_TRAIN).scores == (1, 2, 3)
    clam = parser.parse_args([*CLAM_TRAIN, "--dropout", "0", "--threads", "1024"])
    assert clam.dropout == 0.0 and clam.threads == 1024 and clam.model_type == "clam_sb"
    net = parser.parse_args([*HER2NET_PREDICT, "--threshold", "100"])
    assert net.threshold == 100.0


def test_patchcnn_error_stays_one_line(tmp_path, capsys):
    assert main(["patchcnn", "predict", str(tmp_path / "missing.svs")]) == 2
    err = one_line_error(capsys, "missing.svs")
    assert "deprecated" not in err
