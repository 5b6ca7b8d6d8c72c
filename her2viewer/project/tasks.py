"""The work of a cohort run: one task per case and analysis, the same analyses as the app.

:func:`plan` turns a project into the tasks still to do (a task whose case, analysis and
inputs - slide fingerprint, bundle hash, options, her2viewer version - already have a finished
result is skipped, so a re-run does nothing). :func:`run_case` runs the tasks of one case in
a worker process (local pool or Ray) and returns one :class:`Outcome` per task; every artefact
is written atomically under ``artefacts/<case>/`` of the project, and the driver stores the
result row only after the artefact exists, so a killed run is resumed without duplicates.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache, lru_cache
from pathlib import Path

from torch import nn

from her2viewer import __version__
from her2viewer.analysis.cells import analyse_cells
from her2viewer.analysis.clam import analyse_clam, bundle_encoder, clam_features
from her2viewer.analysis.contract import save_npz
from her2viewer.analysis.grade import analyse_grade
from her2viewer.analysis.her2net import analyse_her2net
from her2viewer.analysis.ihc import analyse_ihc
from her2viewer.errors import Her2ViewerError
from her2viewer.features.encoders import Encoder
from her2viewer.models.clam import demo_clam_bundle_path
from her2viewer.models.her2net.model import Her2NetModel, demo_bundle_path, load_her2net
from her2viewer.models.patch_cnn import default_grading_bundle, load_patch_cnn
from her2viewer.outputs import prepare_output_dir
from her2viewer.project.store import Case, Project, ProjectError, ResultRow
from her2viewer.slide import Slide, open_slide
from her2viewer.slide.fingerprint import file_fingerprint
from her2viewer.tissue import segment_tissue

#: Fault injection for tests, comma-separated: ``kill:CASE:ANALYSIS:MARKER`` ends the worker
#: process (like an out-of-memory kill) the first time that task starts (``MARKER`` is a file it
#: creates), ``fail:CASE:ANALYSIS`` raises an unexpected error every time, and
#: ``hang:CASE:ANALYSIS:MARKER`` writes its worker's process id to ``MARKER`` and sleeps a day
#: (a case still in flight).
FAULT_ENV = "HER2VIEWER_PROJECT_FAULT"


@dataclass(frozen=True)
class Task:
    """One analysis of one case, with everything a worker needs (it pickles)."""

    project: str
    case_id: str
    analysis: str
    slide: str
    bundle: str | None
    bundle_hash: str | None
    key: str

    def artefact(self, suffix: str) -> Path:
        """The artefact path of this task: ``artefacts/<case>/<analysis>-<key><suffix>``.

        The case folder is created (an :class:`OutputError` when it cannot be).
        """
        folder = prepare_output_dir(Path(self.project) / "artefacts" / self.case_id)
        return folder / f"{self.analysis}-{self.key}{suffix}"


@dataclass
class Outcome:
    """What a task gave: ``status`` "done" with a summary and artefacts, or "failed"."""

    task: Task
    status: str
    started: float
    seconds: float
    summary: dict = field(default_factory=dict)
    artefacts: list[str] = field(default_factory=list)
    error: str | None = None
    attempts: int = 1

    def row(self, project: Project) -> ResultRow:
        """The result row of this outcome (artefact paths relative to the project)."""
        task = self.task
        return ResultRow(
            task.case_id, task.analysis, task.key, self.status, __version__, task.bundle_hash,
            {}, self.error, self.started, self.seconds, self.attempts, self.summary,
            [project.relative(p) for p in self.artefacts],
        )  # fmt: skip


def _segment(slide: Slide, task: Task) -> tuple[dict, list[Path]]:
    seg = segment_tissue(slide)
    summary = {
        "tissue_fraction": round(float(seg.mask.mean()), 6),
        "tissue_area_px": seg.tissue_area_level0,
        "contours": len(seg.contours),
        "downsample": seg.downsample,
    }
    return summary, [save_npz(task.artefact(".npz"), summary, mask=seg.mask.astype("uint8"))]


def _features_folder(task: Task) -> Path:
    return Path(task.project) / "features"


#: Most bundles of each model kind a worker process keeps loaded (the least recently used
#: one is dropped first), so a long run over several bundles does not fill the memory.
MODELS_KEPT = 2
#: Keeps a loader's models per worker process, keyed by bundle path and content hash.
_kept = lru_cache(maxsize=MODELS_KEPT)


@_kept
def _encoder(bundle: str, digest: str) -> Encoder:
    """A CLAM bundle's encoder, built once per worker process and bundle content.

    Workers live for the whole run (Ray reuses them across tasks), so each keeps its models
    loaded - on its GPU when it has one - instead of loading them for every case.
    """
    return bundle_encoder(bundle)


@_kept
def _her2net_model(bundle: str, digest: str) -> Her2NetModel:
    """A HER2Net bundle's model, loaded once per worker process and bundle content."""
    return load_her2net(bundle)


@_kept
def _grade_model(bundle: str, digest: str) -> tuple[nn.Module, dict]:
    """A grading bundle's patch CNN and metadata, loaded once per worker process and content."""
    return load_patch_cnn(bundle)


def _extract(slide: Slide, task: Task) -> tuple[dict, list[Path]]:
    encoder = _encoder(task.bundle, task.bundle_hash)
    feats = clam_features(slide, task.bundle, cache=_features_folder(task), encoder=encoder)
    files = sorted((_features_folder(task) / "clam" / slide.info.fingerprint).glob("*.h5"))
    return {"patches": len(feats), "dim": int(feats.features.shape[1])}, files


def _clam(slide: Slide, task: Task) -> tuple[dict, list[Path]]:
    encoder = _encoder(task.bundle, task.bundle_hash)
    result = analyse_clam(slide, task.bundle, cache=_features_folder(task), encoder=encoder)
    return result.summary(), [result.save(task.artefact(".npz"))]


def _her2net(slide: Slide, task: Task) -> tuple[dict, list[Path]]:
    folder = task.artefact("")
    model = _her2net_model(task.bundle, task.bundle_hash)
    result = analyse_her2net(slide, task.bundle, model=model, out_dir=folder)  # json last
    return result.summary(), [folder]


def _grade(slide: Slide, task: Task) -> tuple[dict, list[Path]]:
    model = _grade_model(task.bundle, task.bundle_hash)
    result = analyse_grade(slide, task.bundle, model=model)
    return result.summary(), [result.save(task.artefact(".json"))]


def _saved(analyse: Callable, suffix: str) -> Callable[[Slide, Task], tuple[dict, list[Path]]]:
    def run(slide: Slide, task: Task) -> tuple[dict, list[Path]]:
        result = analyse(slide, task.bundle)
        return result.summary(), [result.save(task.artefact(suffix))]

    return run


@dataclass(frozen=True)
class Analysis:
    """How a cohort run does one analysis: the slide it reads, its bundle and its runner."""

    role: str
    bundle: Callable[[], Path] | None
    run: Callable[[Slide, Task], tuple[dict, list[Path]]]


#: The analyses of ``project run``, in the order a case runs them (extract before CLAM).
ANALYSES = {
    "segment": Analysis("he", None, _segment),
    "extract": Analysis("he", demo_clam_bundle_path, _extract),
    "clam": Analysis("he", demo_clam_bundle_path, _clam),
    "her2net": Analysis("he", demo_bundle_path, _her2net),
    "grade": Analysis("he", default_grading_bundle, _grade),
    "ihc": Analysis("ihc", None, _saved(analyse_ihc, ".npz")),
    "cells": Analysis("ihc", None, _saved(analyse_cells, ".npz")),
}


#: The analyses that run a model: with ``--actors`` or ``--gpus-per-task`` they run on Ray actors
#: that keep their models loaded (each bundle once per actor, see :func:`_encoder`).
MODEL_ANALYSES = ("extract", "clam", "her2net", "grade")


def split_models(cases: list[list[Task]]) -> tuple[list[list[Task]], list[list[Task]]]:
    """Each case's tasks without a model and its model tasks, as two lists of non-empty cases.

    The two parts of a case are independent (CLAM reads the features of ``extract``, which
    runs before it in the model part), so they may run on different workers.
    """
    parts = [[t for t in case if t.analysis in MODEL_ANALYSES] for case in cases]
    rest = [[t for t in case if t.analysis not in MODEL_ANALYSES] for case in cases]
    return [c for c in rest if c], [c for c in parts if c]


def parse_analyses(text: str) -> list[str]:
    """``"segment,clam"`` -> the analyses in run order (a :class:`ProjectError` if unknown)."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in ANALYSES]
    if unknown or not names:
        raise ProjectError(
            f"Unknown analysis {unknown[0] if unknown else '(none)'!r} in --analyses: "
            f"choose from {', '.join(ANALYSES)}."
        )
    return [n for n in ANALYSES if n in names]


@cache
def bundle_hash(path: Path) -> str:
    """A content hash of a bundle folder (the fingerprint of each of its files)."""
    files = sorted(p for p in Path(path).rglob("*") if p.is_file())
    parts = [f"{p.relative_to(path)}:{file_fingerprint(p)}" for p in files]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def task_key(analysis: str, fingerprint: str, bundle: str | None) -> str:
    """The identity of a task's inputs: analysis, slide, bundle content, options, version."""
    identity = [analysis, fingerprint, bundle, {}, __version__]
    return hashlib.sha256(json.dumps(identity).encode()).hexdigest()[:16]


def _case_tasks(project: Project, case: Case, names: list[str], done: set) -> list[Task]:
    tasks = []
    for name in names:
        spec = ANALYSES[name]
        path, fingerprint = case.slide(spec.role)
        if path is None:
            continue  # no slide of that stain: the analysis does not apply to this case
        bundle = spec.bundle() if spec.bundle else None
        digest = bundle_hash(bundle) if bundle else None
        key = task_key(name, fingerprint, digest)
        if (case.case_id, name, key) not in done:
            tasks.append(
                Task(str(project.folder), case.case_id, name, path,
                     str(bundle) if bundle else None, digest, key)
            )  # fmt: skip
    return tasks


def plan(project: Project, names: list[str]) -> list[list[Task]]:
    """The tasks still to do, grouped by case (each group runs in order in one worker)."""
    done = project.done_keys()
    groups = [_case_tasks(project, case, names, done) for case in project.cases()]
    return [group for group in groups if group]


def _inject_fault(task: Task) -> None:
    for spec in filter(None, os.environ.get(FAULT_ENV, "").split(",")):
        mode, case_id, analysis, *marker = spec.split(":", 3)
        if (case_id, analysis) != (task.case_id, task.analysis):
            continue
        if mode == "fail":
            raise RuntimeError(f"injected failure of {analysis} on {case_id}")
        if mode == "kill" and marker and not os.path.exists(marker[0]):
            Path(marker[0]).touch()
            os._exit(137)
        if mode == "hang" and marker:
            Path(marker[0]).write_text(str(os.getpid()))
            time.sleep(86400)


def run_task(task: Task) -> Outcome:
    """Run one task; a user error (a damaged slide, a refusal) is a failed outcome.

    Unexpected exceptions propagate, so the engine retries the case.
    """
    started = time.time()
    _inject_fault(task)
    try:
        with open_slide(task.slide) as slide:
            summary, files = ANALYSES[task.analysis].run(slide, task)
    except Her2ViewerError as exc:
        return Outcome(task, "failed", started, time.time() - started, error=str(exc))
    files = [str(f) for f in files]
    return Outcome(task, "done", started, time.time() - started, summary, files)


def run_case(tasks: list[Task]) -> list[Outcome]:
    """Run the tasks of one case in order (the unit an engine schedules)."""
    return [run_task(task) for task in tasks]


def failed(tasks: list[Task], error: BaseException | str, attempts: int) -> list[Outcome]:
    """The outcomes of a case whose worker failed ``attempts`` times (one-line error)."""
    text = " ".join(str(error).split()) or type(error).__name__  # one line
    now = time.time()
    return [Outcome(t, "failed", now, 0.0, error=text, attempts=attempts) for t in tasks]
