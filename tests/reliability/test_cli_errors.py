"""Refusals of the command line itself are one line, like every other user error."""

from __future__ import annotations

import pytest

from her2viewer.cli import main


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["view", "--size", "abc"], "her2viewer view: error: argument --size"),
        (["clam", "infer"], "her2viewer clam infer: error: the following arguments are required"),
        (["no-such-verb"], "invalid choice: 'no-such-verb'"),
        (["clam", "heatmap", "x.svs", "--overlap", "1.0"], "argument --overlap"),
    ],
)
def test_bad_options_are_one_line_and_exit_2(argv, fragment, capsys):
    with pytest.raises(SystemExit) as stop:
        main(argv)
    err = capsys.readouterr().err
    assert stop.value.code == 2
    assert err.count("\n") == 1 and "usage:" not in err, err
    assert fragment in err and "--help" in err
