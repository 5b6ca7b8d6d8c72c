"""Crash safety: SIGKILL a process 100 times while it writes answers; nothing confirmed is lost."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import pytest
from study_util import make_study

from her2viewer.study.reading import ReadingSession
from her2viewer.study.store import StudyStore

KILLS = 100

#: The victim: records answers as fast as it can and prints each one's key after commit returned.
CHILD = """
import os, sys
from her2viewer.study.store import StudyStore
store = StudyStore(sys.argv[1])
cases = [c.case_id for c in store.cases()]
k = int(sys.argv[2])
os.write(1, b"ready\\n")
while True:
    store.record_answer("crash", "unassisted", cases[k % len(cases)],
                        ("positive", "negative")[k % 2], seconds=float(k % 60), comment=f"k{k}")
    os.write(1, f"{k}\\n".encode())
    k += 1
"""


def _run_and_kill(path, start: int, rng: random.Random) -> list[int]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path), str(start)], stdout=subprocess.PIPE, env=env
    )
    assert proc.stdout.readline() == b"ready\n"
    time.sleep(rng.uniform(0.0, 0.05))
    proc.send_signal(signal.SIGKILL)
    out = proc.stdout.read()
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    return [int(line) for line in out.split()]


@pytest.mark.slow
def test_sigkill_while_answering_loses_no_committed_answer(tmp_path):
    path = make_study(tmp_path, n=21)
    ReadingSession(path, "crash").close()  # enrol the reader and fix the order
    rng = random.Random(12345)
    confirmed: set[int] = set()
    runs_with_answers = 0
    for run in range(KILLS):
        keys = _run_and_kill(path, run * 1_000_000, rng)
        runs_with_answers += bool(keys)
        confirmed.update(keys)
        with StudyStore(path) as store:
            assert store.integrity_check() == "ok"
            stored = {int(a.comment[1:]) for a in store.answers(current_only=False)}
        assert confirmed <= stored, f"run {run}: lost {sorted(confirmed - stored)[:5]}"
    with StudyStore(path) as store:
        answered_cases = {a.case_id for a in store.answers()}
    with ReadingSession(path, "crash") as session:  # the study resumes where it stopped
        assert session.answered() == len(answered_cases)
        position = session.resume_position()
        session.answer(position, "negative", seconds=1.0)
        assert session.case(position).answer == "negative"
    with StudyStore(path) as store:
        assert store.integrity_check() == "ok"
        total = len(store.answers(current_only=False))
    print(
        f"\ncrash test: {KILLS} SIGKILLs, {runs_with_answers} killed after >= 1 commit, "
        f"{len(confirmed)} confirmed answers all present, {total} rows stored "
        "(rows beyond the confirmed ones committed just before their confirmation was printed), "
        "integrity ok"
    )
    assert runs_with_answers > KILLS // 2  # the kills really landed while answers were written


#: Imports one CSV of answers (one transaction); prints "inside" at its first row insert
#: (the transaction is open) and "done" when the import returned.
IMPORTER = """
import os, sys
from her2viewer.study.store import StudyStore
insert = StudyStore._insert_answer
def traced(self, *args):
    if not getattr(self, "_said", False):
        self._said = True
        os.write(1, b"inside\\n")
    return insert(self, *args)
StudyStore._insert_answer = traced
store = StudyStore(sys.argv[1])
store.import_csv(sys.argv[2])
os.write(1, b"done\\n")
"""


def test_sigkill_during_import_is_all_or_nothing(tmp_path):
    path = make_study(tmp_path, n=21)
    with StudyStore(path) as store:
        case_ids = [c.case_id for c in store.cases()]
    rng = random.Random(7)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    finished = 0
    for run in range(10):
        rows = [f"imp{run}_{r},{c},positive" for r in range(25) for c in case_ids]
        answers = tmp_path / f"answers{run}.csv"
        answers.write_text("reader,case_id,answer\n" + "\n".join(rows) + "\n")
        proc = subprocess.Popen(
            [sys.executable, "-c", IMPORTER, str(path), str(answers)],
            stdout=subprocess.PIPE, env=env,
        )  # fmt: skip
        assert proc.stdout.readline() == b"inside\n"
        time.sleep(rng.uniform(0.0, 0.03))
        proc.send_signal(signal.SIGKILL)
        done = proc.stdout.read() == b"done\n"
        proc.wait()
        finished += done
        with StudyStore(path) as store:
            assert store.integrity_check() == "ok"
            count = sum(a.reader.startswith(f"imp{run}_") for a in store.answers())
        assert count in (0, len(rows)) and (count == len(rows) or not done)
    print(
        f"\nimport crash test: 10 SIGKILLs inside the import transaction, {finished} imports "
        "had finished, none half-written"
    )
