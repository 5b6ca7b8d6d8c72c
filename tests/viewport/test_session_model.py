"""The Qt-free session model: saved atomically, read back, damaged files in one sentence."""

import json

import pytest

from her2viewer.errors import Her2ViewerError
from her2viewer.session import (
    AnalysisModel,
    LayerModel,
    PaneModel,
    Session,
    SessionError,
    ViewModel,
    load_session,
    result_name,
    results_dir,
    save_session,
    session_path,
)
from tests.reliability.conftest import leftovers


def _session() -> Session:
    return Session(
        panes=[
            PaneModel(
                slide="/slides/he.svs",
                view=ViewModel(cx=100.5, cy=200.0, downsample=3.0, angle=0.5, flip=True),
                layers=[LayerModel(name="HER2Net tumor", visible=False, opacity=0.4)],
            ),
            PaneModel(slide="/slides/ihc.svs", sync=False),
        ],
        registration=[[1.0, 0.0, 5.0], [0.0, 1.0, -3.0], [0.0, 0.0, 1.0]],
        analyses=[AnalysisModel(panel="IHC score", panes=[1, 0], file=result_name("IHC score", 1))],
    )


def test_a_session_round_trips_under_the_users_data_folder(isolated_data):
    path = session_path()
    assert path.parent.parent == isolated_data and path.name == "last.json"
    assert load_session(path) is None  # nothing saved yet: nothing to restore
    save_session(_session(), path)
    assert load_session(path) == _session()
    assert leftovers(path.parent) == []  # written atomically: no temporary file left


def test_projects_keep_their_own_session(tmp_path):
    assert session_path(tmp_path / "project") == tmp_path / "project" / "session.json"


def test_saving_drops_result_files_the_session_no_longer_names(isolated_data):
    path = session_path()
    folder = results_dir(path)
    folder.mkdir(parents=True)
    kept, stale, stale_folder = folder / "ihc-score-pane1", folder / "x", folder / "her2net-pane0"
    kept.write_bytes(b"x")
    stale.write_bytes(b"x")
    stale_folder.mkdir()
    (stale_folder / "her2net.json").write_text("{}")
    save_session(_session(), path)
    assert kept.exists() and not stale.exists() and not stale_folder.exists()


@pytest.mark.parametrize(
    "content, fragment",
    [
        ("{not json", "not valid JSON"),
        (json.dumps({"panes": [{"view": {"cx": 1}}]}), "lacks the field"),
        (
            json.dumps({"panes": [{"slide": "a", "view": {"cx": 1, "cy": 1, "downsample": -2}}]}),
            "downsample",
        ),
        (json.dumps({"registration": [[1, 0], [0, 1]]}), "3x3"),
        (json.dumps({"analyses": [{"panel": "x", "panes": [], "file": "x.npz"}]}), "panes"),
        (
            json.dumps({"analyses": [{"panel": "x", "panes": [0], "file": "../../etc/x.npz"}]}),
            "results folder",
        ),
        (json.dumps({"version": 99}), "session versions up to"),
    ],
)
def test_a_damaged_session_is_one_sentence_naming_the_file(tmp_path, content, fragment):
    path = tmp_path / "last.json"
    path.write_text(content)
    with pytest.raises(SessionError) as caught:
        load_session(path)
    message = str(caught.value)
    assert isinstance(caught.value, Her2ViewerError)
    assert str(path) in message and fragment in message and "\n" not in message


def test_result_names_are_plain_file_names():
    assert result_name("IHC score", 1) == "ihc-score-pane1"
    assert result_name("///", 0) == "analysis-pane0"
