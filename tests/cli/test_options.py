"""The command line's shared options: one definition each, old output spellings still accepted."""

from __future__ import annotations

import argparse
import ast
import importlib
import inspect
import subprocess
import sys
from pathlib import Path

import pytest

from her2viewer.cli import build_parser as main_parser
from her2viewer.cli import main
from her2viewer.cli.main import VERB_MODULES, OneLineParser
from her2viewer.cli.options import DEVICE_HELP
from her2viewer.devices import DEVICE_CHOICES
from tests.study_util import make_study

#: Every verb group: all of them live in her2viewer/cli/.
CLI_MODULES = list(VERB_MODULES)
#: The command-line modules that lived inside the rooms before the move.
ROOM_CLI_MODULES = (
    "slide.cli",
    "stain.cli",
    "registration.cli",
    "study.cli",
    "gui.cli",
    "radiomics.cli",
    "tissue.cli",
    "features.cli",
    "models.cli",
    "models.patchcnn_cli",
    "models.her2net.cli",
    "training.cli",
)


def _verbs(parser: argparse.ArgumentParser, prefix: str = ""):
    """Yield ``(name, parser)`` of every verb and sub-verb below ``parser``."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield f"{prefix}{name}", sub
                yield from _verbs(sub, f"{prefix}{name} ")


def _actions(option: str, modules=CLI_MODULES):
    """Every ``(verb, action)`` that defines ``option`` in the verbs of ``modules``."""
    found = []
    for module in modules:
        parser = OneLineParser(prog="her2viewer")
        importlib.import_module(module).register(parser.add_subparsers())
        for verb, sub in _verbs(parser):
            found += [(verb, a) for a in sub._actions if option in a.option_strings]
    return found


def test_the_verb_groups_live_in_the_cli_package():
    assert all(name.startswith("her2viewer.cli.") for name in CLI_MODULES)
    package = Path(importlib.import_module("her2viewer.cli").__file__).parent
    with_verbs = {
        f"her2viewer.cli.{path.stem}"
        for path in package.glob("*.py")
        if "def register(" in path.read_text(encoding="utf-8")
    }
    assert with_verbs == set(CLI_MODULES)  # every verb module is registered, and only those
    for module in ROOM_CLI_MODULES:
        with pytest.raises(ModuleNotFoundError):
            importlib.import_module(f"her2viewer.{module}")


@pytest.mark.parametrize("name", VERB_MODULES)
def test_verb_modules_import_options_but_never_each_other(name):
    tree = ast.parse(inspect.getsource(importlib.import_module(name)))
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    others = {*VERB_MODULES, "her2viewer.cli", "her2viewer.cli.main"} - {name}
    assert not imported & others, name
    assert not hasattr(importlib.import_module("her2viewer.demo"), "register")


def test_device_is_defined_once():
    actions = _actions("--device")
    assert {verb for verb, _ in actions} >= {
        "ihc train-mil",
        "ihc predict-mil",
        "extract",
        "clam heatmap",
        "her2net train",
        "her2net predict",
        "her2net evaluate",
        "grade train",
        "grade predict",
        "patchcnn gradcam",
    }
    for verb, action in actions:
        assert tuple(action.choices) == DEVICE_CHOICES, verb
        assert (action.default, action.help) == ("auto", DEVICE_HELP), verb


def test_output_path_is_spelled_o_out():
    actions = _actions("--out")
    verbs = {verb for verb, _ in actions}
    assert {"register", "study export", "study report", "radiomics train"} <= verbs
    assert {"segment", "extract", "clam train", "her2net predict", "her2net evaluate"} <= verbs
    assert {"grade train", "grade predict", "grade gradcam", "evaluate"} <= verbs
    for verb, action in actions:
        assert (action.option_strings, action.dest) == (["-o", "--out"], "out"), verb
    hidden = _actions("--output")
    assert "her2net evaluate" in {verb for verb, _ in hidden}
    for verb, action in hidden:
        assert action.help == argparse.SUPPRESS and action.dest == "out", verb


def test_threads_is_one_option():
    actions = _actions("--threads")
    assert {"clam train", "her2net train", "her2net predict", "her2net evaluate"} <= {
        v for v, _ in actions
    }
    assert len({(a.type, a.default, a.help) for _, a in actions}) == 1


def test_json_is_one_flag():
    actions = _actions("--json")
    assert {"info", "demo", "ihc score", "register", "study status"} <= {v for v, _ in actions}
    assert {"segment", "extract", "clam infer", "her2net predict", "grade predict"} <= {
        v for v, _ in actions
    }
    for verb, action in actions:
        assert isinstance(action, argparse._StoreTrueAction), verb
        assert action.option_strings == ["--json"] and action.help.startswith("print "), verb


@pytest.mark.parametrize(
    "base",
    [
        ["study", "create", "s.h2study", "--cases", "c.csv", "--question", "status"],
        ["extract", "s.svs", "-o", "features"],
        ["clam", "train", "--features-dir", "f", "--labels", "l.csv", "-o", "out"],
        ["her2net", "train", "--cohort", "c.csv", "-o", "out"],
        ["her2net", "evaluate", "--cohort", "c.csv"],
    ],
)
def test_progress_and_quiet_are_one_switch(base):
    parser = main_parser()
    assert parser.parse_args(base).progress is True
    assert parser.parse_args([*base, "--quiet"]).progress is False
    with pytest.raises(SystemExit):
        parser.parse_args([*base, "--quiet", "--progress"])


def test_the_old_output_spelling_still_works_with_a_note(tmp_path, capsys):
    study = make_study(tmp_path)
    out = tmp_path / "answers.csv"
    assert main(["study", "export", str(study), "--output", str(out)]) == 0
    err = capsys.readouterr().err
    assert out.is_file()
    assert "--output is deprecated" in err and "use -o/--out" in err
    assert main(["study", "export", str(study), "-o", str(tmp_path / "b.csv")]) == 0
    assert "deprecated" not in capsys.readouterr().err


def test_the_short_output_spelling_works_where_only_out_was(tmp_path, capsys):
    assert main(["radiomics", "train", str(tmp_path / "none.csv"), "-o", "m.json"]) == 2
    assert "Features file not found" in capsys.readouterr().err  # parsed; refused by the verb


def test_her2net_evaluate_takes_its_old_output_spelling_with_a_note(capsys):
    base = ["her2net", "evaluate", "--cohort", "c.csv"]
    assert main_parser().parse_args([*base, "--output", "r.json"]).out == "r.json"
    assert "--output is deprecated" in capsys.readouterr().err
    assert main_parser().parse_args([*base, "-o", "r.json"]).out == "r.json"


def test_the_old_grade_spelling_runs_with_a_note(tmp_path, capsys):
    from her2viewer.cli import grade

    args = main_parser().parse_args(["patchcnn", "gradcam", "x.svs", "-o", str(tmp_path / "c.npy")])
    assert grade._noting_alias(lambda _args: 0)(args) == 0  # a verb that succeeds at once
    err = capsys.readouterr().err
    assert "'patchcnn' is deprecated" in err and "use 'grade'" in err
    missing = str(tmp_path / "none.svs")  # an error stays one line, without the note
    assert main(["patchcnn", "gradcam", missing, "-o", str(tmp_path / "c.npy")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "deprecated" not in err


def test_info_does_not_import_qt(cmu_svs):
    code = (
        "import sys; from her2viewer.cli import main; rc = main(['info', sys.argv[1]]); "
        "assert rc == 0, rc; "
        "qt = sorted(m for m in sys.modules if m.split('.')[0] in ('PySide6', 'pyqtgraph')); "
        "print('QT', qt)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(cmu_svs)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "QT []" in result.stdout
