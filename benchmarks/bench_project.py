"""Cohort-run benchmark: cases per hour of ``project run`` with the local and Ray engines. JSON.

A synthetic cohort (12 paired cases of 3000 x 2400 px by default, written once into a temp
folder) is run twice from scratch - once per engine, each in a new project - with segment,
extract, CLAM, HER2Net and IHC (the demo bundles), then Ray's overhead per task is measured
with empty tasks on the same local cluster (the scheduling cost a real task pays on top of
its work). Also printed: the mean seconds per case of each analysis (the per-slide costs of
her2viewer/guide/scaling.md) and the bytes the project stores per case.

    nice .venv/bin/python benchmarks/bench_project.py [--cases 12] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from her2viewer.project.cohort import import_csv
from her2viewer.project.engines import start_ray
from her2viewer.project.run import run_project
from her2viewer.project.store import Project
from her2viewer.slide.synthetic import write_cohort

ANALYSES = ["segment", "extract", "clam", "her2net", "ihc"]


def folder_bytes(folder: Path) -> int:
    """Bytes of every file under ``folder``."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def run_engine(engine: str, labels: Path, out: Path, workers: int) -> dict:
    """Run the cohort with ``engine`` in a new project; cases per hour and per-analysis costs."""
    project = Project.create(out / f"project-{engine}")
    import_csv(project, labels)
    report = run_project(project, ANALYSES, engine=engine, workers=workers)
    rows = project.results()
    cases = len(project.cases())
    per_analysis = {
        name: round(statistics.mean(r.seconds for r in rows if r.analysis == name), 2)
        for name in ANALYSES
    }
    patches = [r.summary["patches"] for r in rows if r.analysis == "extract"]
    return {
        "engine": engine,
        "tasks_done": report.done,
        "tasks_failed": report.failed,
        "wall_s": round(report.seconds, 1),
        "cases_per_hour": round(cases * 3600 / report.seconds, 1),
        "mean_task_s": per_analysis,
        "patches_per_case": round(statistics.mean(patches), 1),
        "project_bytes_per_case": folder_bytes(project.folder) // cases,
    }


def _noop(x: int) -> int:
    return x


def ray_overhead(workers: int, tasks: int = 200) -> dict:
    """Seconds per empty Ray task (submit, schedule, run, fetch) on a local cluster."""
    import ray

    start_ray(ray, workers, None)  # as the Ray engine starts it: on the loopback interface
    try:
        remote = ray.remote(_noop).options(num_cpus=1)
        ray.get([remote.remote(i) for i in range(workers * 2)])  # workers started
        start = time.perf_counter()
        ray.get([remote.remote(i) for i in range(tasks)])
        batch = (time.perf_counter() - start) / tasks
        start = time.perf_counter()
        for i in range(tasks // 4):
            ray.get(remote.remote(i))
        serial = (time.perf_counter() - start) / (tasks // 4)
    finally:
        ray.shutdown()
    return {
        "per_task_batch_ms": round(batch * 1e3, 2),
        "per_task_round_trip_ms": round(serial * 1e3, 2),
    }


def main() -> None:
    """Parse the options, run both engines and print the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=12)
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--size", type=int, nargs=2, default=(3000, 2400))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        os.environ.setdefault("HER2VIEWER_CACHE", str(out / "cache"))
        labels = write_cohort(out / "cohort", args.cases, seed=0, size=tuple(args.size))
        results = {
            "cases": args.cases,
            "slide_size": list(args.size),
            "workers": args.workers,
            "cpus": os.cpu_count(),
            "analyses": ANALYSES,
            "runs": [run_engine(e, labels, out, args.workers) for e in ("local", "ray")],
            "ray_overhead": ray_overhead(args.workers),
        }
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
