"""Access to a reader study: PINs, the owner secret, the access log, closing, hand edits.

Every way round the CLI offers is tried: a wrong or missing PIN, another reader's
PIN, a reader's PIN as the owner secret, unblinding verbs without the owner
secret, reading a closed study, editing the SQLite file by hand.
"""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import pytest
from study_util import make_study, write_csv

from her2viewer.cli import main
from her2viewer.errors import StudyError
from her2viewer.study import access
from her2viewer.study.access import OWNER_ENV, READER_ENV, AccessError
from her2viewer.study.reading import ReadingSession
from her2viewer.study.store import SCHEMA, SCHEMA_VERSION, StudyStore

OWNER, ALICE, BOB = "owner-secret-42", "1111", "2222"


def _protected(tmp_path, readers=("alice", "bob")):
    """A study (closed enrolment) protected by OWNER; alice and bob have PINs."""
    path = make_study(tmp_path, readers=readers)
    with StudyStore(path) as store:
        store.unlock(None, "test")
        store.protect(OWNER)
        store.set_reader_pin("alice", ALICE)
        store.set_reader_pin("bob", BOB)
    return path


def _cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def _one_line(code, err, *fragments):
    assert code == 2 and err.count("\n") == 1 and err.startswith("her2viewer: error:"), err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in err, (fragment, err)


def _log(path):
    with StudyStore(path, readonly=True) as store:
        return store.access_log()


def test_pins_are_salted_scrypt_records_never_the_secret(tmp_path):
    path = _protected(tmp_path)
    with StudyStore(path, readonly=True) as store:
        records = dict(store.conn.execute("SELECT reader, secret FROM readers"))
        owner = json.loads(store.meta("owner_secret"))
    alice = json.loads(records["alice"])
    assert alice["kdf"] == owner["kdf"] == "scrypt"
    assert {alice[k] for k in ("n", "r", "p")} == set(access.SCRYPT_COST.values())
    assert alice["salt"] != json.loads(records["bob"])["salt"]
    raw = path.read_bytes() + path.with_name(path.name + "-wal").read_bytes()
    assert OWNER.encode() not in raw
    same = [json.loads(access.new_record(ALICE))["hash"] for _ in range(2)]
    assert same[0] != same[1]  # salted: one PIN, two records
    with pytest.raises(AccessError, match="at least 4 characters"):
        access.new_record("12")


def test_wrong_pin_refused_and_every_opening_logged(tmp_path):
    path = _protected(tmp_path)
    with pytest.raises(AccessError, match="wrong PIN for reader 'alice'"):
        ReadingSession(path, "alice", pin="9999")
    with pytest.raises(AccessError, match="wrong PIN for reader 'alice'"):
        ReadingSession(path, "alice", pin=BOB)  # another reader's PIN
    with pytest.raises(AccessError, match="reader 'alice' needs their PIN"):
        ReadingSession(path, "alice")
    with pytest.raises(StudyError, match="'mallory' is not enrolled"):
        ReadingSession(path, "mallory", pin="3333")
    with ReadingSession(path, "alice", pin=ALICE) as session:
        session.answer(0, "positive")
    readings = [e for e in _log(path) if e.role == "reader"]
    assert [(e.who, e.outcome.split(":")[0]) for e in readings] == [
        ("alice", "refused"), ("alice", "refused"), ("alice", "refused"),
        ("mallory", "refused"), ("alice", "granted"),
    ]  # fmt: skip
    assert all(e.at and e.action == "read unassisted arm" for e in readings)
    assert "9999" not in str(readings) and ALICE not in str(readings)
    with StudyStore(path) as store, pytest.raises(sqlite3.DatabaseError, match="append-only"):
        store.conn.execute("DELETE FROM access_log")


def test_cli_ways_round_are_refused_in_one_line(tmp_path, capsys, monkeypatch):
    path = _protected(tmp_path)
    with ReadingSession(path, "alice", pin=ALICE) as session:
        session.answer(0, "negative", comment="alice's own call")
    monkeypatch.setenv(READER_ENV, ALICE)  # alice, with her PIN, tries the owner's verbs
    out = tmp_path / "out"
    owner_verbs = [
        ("status", path),
        ("status", path, "--json"),
        ("export", path, "-o", out / "e.csv"),
        ("export", path, "-o", out / "l.csv", "--format", "long"),
        ("export", path, "-o", out / "m.geojson", "--format", "marks"),
        ("report", path, "-o", out / "rep"),
        ("export-for-reader", path, "-o", out / "p.h2study"),
        ("import", path, write_csv(tmp_path / "a.csv", "reader,case_id,answer", ["eve,x,pos"])),
        ("access-log", path),
        ("close", path),
        ("add-reader", path, "mallory"),
        ("protect", path),
        ("mrmc", path, "--json"),
        ("sample-size", path, "--effect", "0.05"),
    ]
    out.mkdir()
    for argv in owner_verbs:
        _one_line(*_cli(capsys, "study", *argv)[::2], "needs the owner secret", "HER2VIEWER_OWNER")
    monkeypatch.setenv(OWNER_ENV, ALICE)  # her PIN as the owner secret
    for argv in owner_verbs:
        _one_line(*_cli(capsys, "study", *argv)[::2], "wrong owner secret of study.h2study")
    assert not any(out.iterdir())
    monkeypatch.delenv(OWNER_ENV)
    code, _, err = _cli(capsys, "study", "read", path, "--reader", "bob")
    _one_line(code, err, "wrong PIN for reader 'bob'")
    monkeypatch.delenv(READER_ENV)
    code, _, err = _cli(capsys, "study", "read", path, "--reader", "alice")
    _one_line(code, err, "reader 'alice' needs their PIN", READER_ENV)
    with pytest.raises(SystemExit):  # no secret on a command line
        main(["study", "read", str(path), "--reader", "alice", "--pin", ALICE])
    assert "unrecognized arguments: --pin" in capsys.readouterr().err
    refused = [e for e in _log(path) if e.outcome.startswith("refused")]
    assert len(refused) == 2 * len(owner_verbs) + 2


def test_owner_unblinds_with_the_secret(tmp_path, capsys, monkeypatch):
    path = _protected(tmp_path)
    with ReadingSession(path, "bob", pin=BOB) as session:
        session.answer(0, "positive")
    monkeypatch.setenv(OWNER_ENV, OWNER)
    code, out, _ = _cli(capsys, "study", "status", path)
    assert code == 0 and "bob/unassisted: 1/6" in out and "access: protected" in out
    code, out, _ = _cli(capsys, "study", "export", path, "-o", tmp_path / "e.csv")
    assert code == 0 and "1 answer rows" in out
    code, out, _ = _cli(capsys, "study", "access-log", path, "--json")
    entries = json.loads(out)
    assert [e["action"] for e in entries if e["role"] == "owner"][-3:] == [
        "status", "export", "access-log",
    ]  # fmt: skip
    assert {"id", "at", "who", "role", "action", "outcome"} == set(entries[0])


def test_a_reader_reads_only_their_own_session(tmp_path):
    path = _protected(tmp_path)
    with ReadingSession(path, "alice", pin=ALICE) as alice:
        alice.answer(0, "positive", comment="alice was here")
    with ReadingSession(path, "bob", pin=BOB) as bob:
        assert bob.answered() == 0 and all(bob.case(i).answer is None for i in range(6))
        assert "alice" not in str([bob.case(i) for i in range(6)])


def test_reading_a_closed_study_is_refused(tmp_path, capsys, monkeypatch):
    path = _protected(tmp_path)
    monkeypatch.setenv(OWNER_ENV, OWNER)
    code, out, _ = _cli(capsys, "study", "close", path)
    assert code == 0 and "takes no more answers" in out
    with pytest.raises(StudyError, match="study.h2study was closed on 20"):
        ReadingSession(path, "alice", pin=ALICE)
    monkeypatch.setenv(READER_ENV, ALICE)
    _one_line(*_cli(capsys, "study", "read", path, "--reader", "alice")[::2], "was closed on")
    with StudyStore(path) as store, pytest.raises(StudyError, match="takes no more answers"):
        store.record_answer("alice", "unassisted", "HER2POS_case00", "positive")


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (
            "UPDATE readers SET secret = :forged WHERE reader = 'alice'",
            "PIN record, or the enrolment",
        ),
        ("INSERT INTO readers VALUES ('mallory', 1, 'now', :forged)", "'mallory' was added"),
        ("DELETE FROM readers WHERE reader = 'bob'", "'bob' was removed"),
        ("UPDATE meta SET value = '1' WHERE key = 'open_enrolment'", "was changed"),
    ],
)
def test_hand_edits_of_the_readers_table_are_detected(tmp_path, capsys, monkeypatch, edit, problem):
    path = _protected(tmp_path)
    raw = sqlite3.connect(path)
    raw.execute(edit.replace(":forged", "?") if ":forged" in edit else edit,
                (access.new_record("6666"),) if ":forged" in edit else ())  # fmt: skip
    raw.commit()
    raw.close()
    monkeypatch.setenv(OWNER_ENV, OWNER)
    code, _, err = _cli(capsys, "study", "status", path)
    _one_line(code, err, "readers table of study.h2study was edited outside her2viewer", problem)


def test_removing_the_owner_record_by_hand_does_not_open_the_study(tmp_path, capsys, monkeypatch):
    path = _protected(tmp_path)
    raw = sqlite3.connect(path)
    raw.execute("DELETE FROM meta WHERE key = 'owner_secret'")
    raw.commit()
    raw.close()
    code, _, err = _cli(capsys, "study", "export", path, "-o", tmp_path / "e.csv")
    _one_line(code, err, "needs the owner secret")
    monkeypatch.setenv(OWNER_ENV, OWNER)
    code, _, err = _cli(capsys, "study", "export", path, "-o", tmp_path / "e.csv")
    _one_line(code, err, "stored owner secret of study.h2study is damaged or edited by hand")
    with pytest.raises(AccessError, match="needs their PIN"):
        ReadingSession(path, "alice")


def test_damaged_secret_records_are_one_sentence(tmp_path):
    path = _protected(tmp_path)
    raw = sqlite3.connect(path)
    huge = json.dumps({"kdf": "scrypt", "n": 2**40, "r": 8, "p": 1, "salt": "00", "hash": "00"})
    raw.execute("UPDATE readers SET secret = ? WHERE reader = 'alice'", (huge,))
    raw.execute("UPDATE readers SET secret = 'not json' WHERE reader = 'bob'")
    raw.commit()
    raw.close()
    for reader, pin in (("alice", ALICE), ("bob", BOB)):
        with pytest.raises(AccessError, match="edited by hand; restore the file from a backup"):
            ReadingSession(path, reader, pin=pin)


def test_cli_create_protects_with_the_env_secret_or_warns(tmp_path, capsys, monkeypatch):
    make_study(tmp_path / "src")
    src = tmp_path / "src"
    argv = ["study", "create", None, "--cases", src / "cases.csv", "--question", "status",
            "--truth", src / "truth.csv", "--readers", "alice", "--idle-limit", "90"]  # fmt: skip
    code, out, _ = _cli(capsys, *[tmp_path / "open.h2study" if a is None else a for a in argv])
    assert code == 0 and "warning: no owner secret" in out and "study protect" in out
    monkeypatch.setenv(OWNER_ENV, OWNER)
    safe = tmp_path / "safe.h2study"
    assert _cli(capsys, *[safe if a is None else a for a in argv])[0] == 0
    with StudyStore(safe) as store:
        assert store.protected and store.rules.idle_limit_s == 90.0
    with pytest.raises(AccessError, match="reader 'alice' has no PIN yet"):
        ReadingSession(safe, "alice", pin="4444")
    monkeypatch.setenv(READER_ENV, ALICE)
    code, out, _ = _cli(capsys, "study", "add-reader", safe, "alice")
    assert code == 0 and "alice has a PIN" in out
    code, out, _ = _cli(capsys, "study", "status", tmp_path / "open.h2study", "--json")
    assert json.loads(out)["access"] == {"protected": False, "closed_at": None}
    ReadingSession(safe, "alice", pin=ALICE).close()
    code, _, err = _cli(capsys, "study", "protect", safe)
    _one_line(code, err, "already has an owner secret")


class _Terminal:
    def __init__(self, tty: bool):
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def test_secret_prompt_on_a_terminal(monkeypatch):
    monkeypatch.delenv(OWNER_ENV, raising=False)
    monkeypatch.setattr(access.sys, "stdin", _Terminal(True))
    answers = iter(["first-secret", "other-secret"])
    monkeypatch.setattr("getpass.getpass", lambda prompt: next(answers))
    with pytest.raises(AccessError, match="the two entries differ"):
        access.read_secret(OWNER_ENV, "new owner secret", confirm=True)
    monkeypatch.setattr("getpass.getpass", lambda prompt: "typed")
    assert access.read_secret(OWNER_ENV, "owner secret") == "typed"
    monkeypatch.setattr(access.sys, "stdin", _Terminal(False))
    assert access.read_secret(OWNER_ENV, "owner secret") is None


def _version_1(tmp_path):
    """A study file as version 1 wrote it, with one answer."""
    path = tmp_path / "old.h2study"
    conn = sqlite3.connect(path)
    conn.executescript(SCHEMA)
    q = {"kind": "status", "labels": ["negative", "positive"], "positive": ["positive"],
         "ordinal": False, "confidence": "none"}  # fmt: skip
    meta = {"schema_version": "1", "question": json.dumps(q), "seed": "7",
            "created_at": "2025-01-01T00:00:00", "open_enrolment": "1"}  # fmt: skip
    conn.executemany("INSERT INTO meta VALUES (?, ?)", meta.items())
    conn.execute("INSERT INTO cases VALUES ('c1', '/nowhere/he.svs', '', 0)")
    conn.execute("INSERT INTO truth VALUES ('c1', 'positive')")
    conn.execute("INSERT INTO arms VALUES ('unassisted', 0, NULL, 0)")
    conn.execute("INSERT INTO readers VALUES ('ann', 5, '2025-01-01')")
    conn.execute(
        "INSERT INTO answers (reader, arm, case_id, revision, answer, seconds, source, "
        "answered_at) VALUES ('ann', 'unassisted', 'c1', 1, 'positive', 4.5, 'reading', 'then')"
    )
    conn.commit()
    conn.close()
    return path


def test_version_1_files_are_read_and_migrated(tmp_path):
    path = _version_1(tmp_path)
    with StudyStore(path, readonly=True) as store:  # read as it is
        assert store.meta("schema_version") == "1"
        (answer,) = store.answers()
        assert answer.answer == "positive" and answer.mark is None
        assert not store.protected
    with ReadingSession(path, "ann") as session:  # writable: migrated first
        assert session.case(0).answer == "positive" and session.case(0).seconds == 4.5
        assert session.registration(0) is None
        session.answer(0, "negative", her2_score=None)
    with StudyStore(path) as store:
        assert store.meta("schema_version") == str(SCHEMA_VERSION)
        assert [a.answer for a in store.answers(current_only=False)] == ["positive", "negative"]
        assert [e.outcome for e in store.access_log()] == ["granted"]
        store.unlock(None, "export")
        store.export_for_reader(tmp_path / "package.h2study")
    with StudyStore(tmp_path / "package.h2study") as package:
        assert package.is_reader_package and package.readers() == {"ann": 5}


def test_four_readers_two_arms_read_with_pins_then_mrmc_with_the_owner_secret(
    tmp_path, capsys, monkeypatch
):
    """The issue's synthetic 4-reader x 2-modality study, read through the reading API."""
    path = make_study(tmp_path, n=12, readers=(), confidence="0-100")
    readers = {f"reader{i}": f"pin-{i}{i}{i}" for i in range(4)}
    with StudyStore(path) as store:
        store.unlock(None, "protect")
        store.protect(OWNER)
        for name, pin in readers.items():
            store.set_reader_pin(name, pin)
        truth = store.truth()
    rng = np.random.default_rng(3)
    for r, (name, pin) in enumerate(readers.items()):
        for arm, skill in (("unassisted", 1.0), ("assisted", 2.0)):
            with ReadingSession(path, name, arm, pin=pin) as session:
                for i in range(session.total):
                    case_id = session._order[i]
                    signal = skill if truth[case_id] == "positive" else -skill
                    p = 1 / (1 + np.exp(-(signal + rng.normal(0, 1.2) + 0.1 * r)))
                    label = "positive" if p >= 0.5 else "negative"
                    session.answer(i, label, confidence=round(100 * p), seconds=5.0)
    code, _, err = _cli(capsys, "study", "mrmc", path, "--json")
    _one_line(code, err, "needs the owner secret")
    monkeypatch.setenv(OWNER_ENV, OWNER)
    code, out, err = _cli(capsys, "study", "mrmc", path, "--json")
    assert code == 0, err
    result = json.loads(out)
    assert {"auc", "rrrc", "frrc"} <= set(result)
    assert {"f", "df1", "df2", "p"} <= set(result["rrrc"])
    assert set(result["auc"]) == set(readers)  # reader x modality
    assert all(set(v) == {"unassisted", "assisted"} for v in result["auc"].values())
    actions = [e.action for e in _log(path) if e.outcome == "granted"]
    assert actions.count("read unassisted arm") == actions.count("read assisted arm") == 4


def test_a_new_reader_types_their_new_pin_twice(tmp_path, capsys, monkeypatch):
    path = _protected(tmp_path, readers=())  # open enrolment
    monkeypatch.delenv(READER_ENV, raising=False)
    monkeypatch.setattr(access.sys, "stdin", _Terminal(True))
    typed = iter(["5555", "5556"])
    monkeypatch.setattr("getpass.getpass", lambda prompt: next(typed))
    code, _, err = _cli(capsys, "study", "read", path, "--reader", "newbie")
    _one_line(code, err, "the two entries differ; nothing was changed")
    with StudyStore(path) as store:
        assert "newbie" not in store.readers()


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (None, None),
        (
            "UPDATE readers SET secret = :forged WHERE reader = 'alice'",
            "readers table of p.h2study",
        ),
        ("DELETE FROM meta WHERE key = 'package_seal'", "not exported by this study's owner"),
        ("UPDATE meta SET value = 'then' WHERE key = 'exported_at'", "or it was edited"),
    ],
)
def test_a_protected_study_imports_only_packages_its_owner_sealed(
    tmp_path, capsys, monkeypatch, edit, message
):
    path = _protected(tmp_path)
    package = tmp_path / "p.h2study"
    monkeypatch.setenv(OWNER_ENV, OWNER)
    assert _cli(capsys, "study", "export-for-reader", path, "-o", package)[0] == 0
    forged = access.new_record("6666")
    raw = sqlite3.connect(package)
    if edit is not None:
        raw.execute(edit.replace(":forged", "?"), (forged,) if ":forged" in edit else ())
        raw.commit()
    raw.close()
    pin = "6666" if edit and ":forged" in edit else ALICE
    with ReadingSession(package, "alice", pin=pin) as session:
        session.answer(0, "positive")
    code, out, err = _cli(capsys, "study", "import", path, package)
    if message is None:
        assert code == 0 and "imported 1 answers" in out
    else:
        _one_line(code, err, message)
        with StudyStore(path) as store:
            assert store.answers() == []
