"""Reader-study benchmark: answer commit latency and statistics/report time; prints JSON.

Usage: ``python benchmarks/bench_study.py [--cases 1000] [--readers 5] [--answers 300]``
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from her2viewer.study.definition import CaseRow, make_question
from her2viewer.study.reading import ReadingSession
from her2viewer.study.report import write_report
from her2viewer.study.stats import analyse
from her2viewer.study.store import StudyStore


def _study(folder: Path, n_cases: int, rng) -> Path:
    question = make_question("status", confidence="0-100")
    cases = [CaseRow(f"c{i:05d}", str(folder / f"c{i}.svs"), "") for i in range(n_cases)]
    truth = {c.case_id: ("positive" if rng.random() < 0.4 else "negative") for c in cases}
    preds = {
        c: (t if rng.random() < 0.85 else ("negative" if t == "positive" else "positive"),
            float(rng.random()))
        for c, t in truth.items()
    }  # fmt: skip
    path = folder / "bench.h2study"
    StudyStore.create(
        path, question, cases, truth, preds, ["unassisted", "assisted"], seed=1
    ).close()
    return path


def bench_commit(path: Path, n_answers: int) -> dict:
    """Latency of ReadingSession.answer (one committed WAL transaction with fsync each)."""
    latencies = []
    with ReadingSession(path, "latency") as session:
        for i in range(n_answers):
            start = time.perf_counter()
            session.answer(i % session.total, ("positive", "negative")[i % 2], 60.0, 3.0)
            latencies.append(time.perf_counter() - start)
    ms = np.asarray(latencies) * 1e3
    return {
        "answers": n_answers,
        "median_ms": round(float(np.median(ms)), 3),
        "p95_ms": round(float(np.percentile(ms, 95)), 3),
        "max_ms": round(float(ms.max()), 3),
    }


def _fill(path: Path, readers: int, rng) -> tuple[float, int]:
    with StudyStore(path) as store:
        truth = store.truth()
        rows = []
        for r in range(readers):
            for arm, err in (("unassisted", 0.3), ("assisted", 0.2)):
                for case_id, t in truth.items():
                    wrong = rng.random() < err
                    answer = ("negative" if t == "positive" else "positive") if wrong else t
                    conf = (
                        float(rng.integers(50, 101))
                        if answer == "positive"
                        else float(rng.integers(0, 51))
                    )
                    rows.append(f"r{r},{case_id},{answer},{conf},{arm},{rng.uniform(5, 90):.1f}")
        answers = path.parent / "answers.csv"
        answers.write_text("reader,case_id,answer,confidence,arm,seconds\n" + "\n".join(rows))
        start = time.perf_counter()
        store.import_csv(answers)
        return time.perf_counter() - start, len(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cases", type=int, default=1000)
    parser.add_argument("--readers", type=int, default=5)
    parser.add_argument("--answers", type=int, default=300)
    parser.add_argument("--bootstrap", type=int, default=2000)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        path = _study(folder, args.cases, rng)
        commit = bench_commit(path, args.answers)
        import_s, n_rows = _fill(path, args.readers, rng)
        with StudyStore(path, readonly=True) as store:
            start = time.perf_counter()
            summary = analyse(store, n_boot=args.bootstrap)
            analyse_s = time.perf_counter() - start
        start = time.perf_counter()
        write_report(path, folder / "report", n_boot=args.bootstrap)
        report_s = time.perf_counter() - start
    result = {
        "benchmark": "study",
        "machine": platform.machine(),
        "python": platform.python_version(),
        "answer_commit": commit,
        "import": {"rows": n_rows, "seconds": round(import_s, 3)},
        "statistics": {
            "cases": args.cases,
            "reader_arms": len(summary["readers"]),
            "bootstrap": args.bootstrap,
            "analyse_seconds": round(analyse_s, 3),
            "full_report_seconds": round(report_s, 3),
        },
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
