"""Hostile-input probe: run a few hundred bad inputs over every verb and print JSON counts.

Every probe runs ``python -m her2viewer ...`` in a fresh sandbox folder (its working
directory) with a timeout, offscreen, and the cache in a private folder. Its result is
classified by :func:`classify` against what was due: one sentence and exit 2 for a user
error, exit 0 (with its outputs written) for a valid request, "not evaluable" where there
is nothing to score, the synthetic-demo notice on demo-bundle results. Afterwards the
runner looks for files written outside the probe's output folder, leftovers (``*.partial``,
``*.tmp``, 0-byte files), the marker a malicious pickle would create and unescaped CSV
formulas. Inputs are generated into a temporary folder; ``../shared`` is only used for the
real CMU-1 slide when it is there.

Usage::

    nice -n 10 python benchmarks/probe_inputs.py [--quick] [--only VERB] [--timeout S] [--jobs N]

Option abuse that argparse rejects is checked in-process (argparse exits before any verb
code runs, so a subprocess would show the same usage + error lines); every value it accepts
runs in a subprocess like the other probes. By default the probe runs a snapshot of git HEAD
(``git archive``), so that edits made in the working tree during a run cannot mix into it;
``--worktree`` probes the working tree instead. ``--fork`` starts each probe by forking this
process after torch is imported instead of starting a fresh interpreter (same argv, working
directory, environment, exit status and output files; about 3 s less per probe). Every
probe runs with its address space capped at 8 GiB.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import math
import os
import pickle
import resource
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import traceback
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
REAL_SVS = REPO.parent / "shared" / "data" / "real" / "cmu-1-small-region.svs"
KINDS = (
    "crash",
    "hang",
    "traceback",
    "code_executed",
    "wrong_result",
    "multi_line_error",
    "wrong_exit_code",
    "written_outside",
    "leftovers",
)
#: Cells a CSV written by the project may never start with unescaped (OWASP).
FORMULA_PAYLOADS = ("=HYPERLINK(", "=cmd|", "@SUM(", "+1+1")
MARKER = "PWNED_MARKER"
#: Address-space cap of every probe (bytes): a memory bomb fails there, not the machine.
MEMORY_CAP = 8 << 30
NOT_EVALUABLE = ("not evaluable", "not_evaluable")
DEMO_NOTICE = "synthetic demo"
#: Empty files that are not outputs: lock files and SQLite's side files of an input study.
NOT_OUTPUTS = (".lock", "-wal", "-shm", "-journal")
#: torch's advice that an unsafe load "will likely succeed" (issue 13 item 11): never repeated.
UNSAFE_HINTS = ("weights_only=False", "can still be loaded")


@dataclass(frozen=True)
class Probe:
    """One hostile invocation: ``her2viewer VERB ARGS`` and what is due.

    ``args`` is a template over the input names (``{he}``, ``{out}``...). ``expect``
    is one of ``error`` (exit 2, one sentence; ``option`` must be named in it),
    ``ok`` (exit 0), ``clean`` (exit 0 or one-sentence error), ``not_evaluable``
    (one-sentence error or "not evaluable" on exit 0), ``demo_notice`` (exit 0 and the
    synthetic-demo notice). ``prep`` names a sandbox preparation in :data:`PREPS`;
    ``outputs`` are paths (templates over ``{out}`` and the working folder ``{cwd}``) that
    must exist and be non-empty after exit 0; they are the verb's own, never "outside".
    """

    verb: str
    args: str
    expect: str
    name: str
    prep: str = ""
    outputs: tuple[str, ...] = ()
    option: str = ""
    env: tuple[tuple[str, str | None], ...] = ()


@dataclass
class Outcome:
    """A finished probe run (or the in-process argparse stand-in for one)."""

    returncode: int | None
    stdout: str = ""
    stderr: str = ""
    timed_out: bool = False
    in_process: bool = False
    extra: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- classifier


def error_lines(stderr: str) -> list[str]:
    """Return the non-blank stderr lines, without argparse's usage block and progress bars."""
    lines, in_usage = [], False
    for line in stderr.splitlines():
        if line.startswith("usage:"):
            in_usage = True
            continue
        if in_usage and line[:1].isspace():
            continue
        in_usage = False
        if line.strip() and "\r" not in line and "[#" not in line:
            lines.append(line)
    return lines


def _option_named(line: str, option: str) -> bool:
    """Whether an error sentence names the option (``--patch-size``, patch size, patch_size)."""
    bare = option.lstrip("-").lower()
    spellings = {bare, bare.replace("-", " "), bare.replace("-", "_")}
    return any(spelling in line.lower() for spelling in spellings)


def _check_error(result, option: str) -> str | None:
    """Kind of failure of a result that had to be a one-sentence error, or None."""
    if result.returncode == 0:
        return "wrong_result"
    if result.returncode != 2:
        return "wrong_exit_code"
    lines = error_lines(result.stderr)
    if len(lines) != 1:
        return "multi_line_error"
    if option and not _option_named(lines[0], option):
        return "wrong_result"
    return None


def classify(
    result: subprocess.CompletedProcess | Outcome,
    expect: str,
    timed_out: bool = False,
    option: str = "",
) -> str | None:
    """Return the failure kind of one finished probe, or None when it behaved as due.

    Parameters
    ----------
    result : CompletedProcess or Outcome
        ``returncode`` (negative: killed by that signal), ``stdout``, ``stderr``.
    expect : str
        ``error``, ``ok``, ``clean``, ``not_evaluable`` or ``demo_notice``.
    timed_out : bool
        The process was killed at the probe's timeout.
    option : str
        For ``error``: the option the sentence must name (empty: any sentence).
    """
    out, err = result.stdout or "", result.stderr or ""
    if timed_out:
        return "hang"
    if result.returncode is None or result.returncode < 0:
        return "crash"
    if "Traceback (most recent call last)" in out + err:
        return "traceback"
    if any(hint in out + err for hint in UNSAFE_HINTS):
        return "wrong_result"
    if expect == "error":
        return _check_error(result, option)
    if expect in ("ok", "demo_notice"):
        if result.returncode != 0:
            return "wrong_exit_code"
        return (
            "wrong_result" if expect == "demo_notice" and DEMO_NOTICE not in out.lower() else None
        )
    if result.returncode == 0:
        said = out.lower()
        if expect == "not_evaluable" and not any(text in said for text in NOT_EVALUABLE):
            return "wrong_result"
        return None
    return _check_error(result, "")


# --------------------------------------------------------------------------- inputs


def _png(width: int, height: int, rows: Callable[[int], bytes], bit_depth: int = 8) -> bytes:
    """Encode a greyscale PNG row by row (so huge declared sizes stay small on disk)."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        body = tag + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    packer = zlib.compressobj(9)
    parts = [packer.compress(b"\0" + rows(y)) for y in range(height)]
    idat = b"".join(parts) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, bit_depth, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


class Evil:
    """A pickle payload: unpickling it creates the marker file."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def resources() -> Path:
    """The shipped bundles of the probed source (the HEAD snapshot or the working tree)."""
    from her2viewer.paths import RESOURCES_DIR

    return RESOURCES_DIR


def _write_csv(path: Path, rows: list[list]) -> Path:
    with path.open("w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    return path


def _run_setup(args: list[str], env: dict, cwd: Path) -> None:
    """Run one verb to build a valid input; stop the probe when it fails."""
    done = subprocess.run(
        [sys.executable, "-m", "her2viewer", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=900,
    )
    if done.returncode != 0:
        sys.exit(f"probe setup failed: her2viewer {' '.join(args)}: {done.stderr[-500:]}")


#: The bad slides :func:`make_slides` writes (``missing.svs`` is never written).
BAD_SLIDES = (
    "empty.svs", "random.svs", "random.tif", "random.ndpi", "random.png", "truncated.svs",
    "huge.png", "tiny.png", "blank.png", "folder.svs", "dangling.svs", "missing.svs",
)  # fmt: skip


def slide_key(name: str) -> str:
    """The template placeholder of a bad slide: ``blank.png`` -> ``bad_blank_png``."""
    return "bad_" + name.replace(".", "_")


def make_slides(inp: Path) -> dict[str, str]:
    """Write the bad slides; return their placeholder names -> paths."""
    rng = np.random.default_rng(0)
    bad = inp / "bad"
    bad.mkdir()
    (bad / "empty.svs").write_bytes(b"")
    for ext in ("svs", "tif", "ndpi", "png"):
        (bad / f"random.{ext}").write_bytes(rng.bytes(65536))
    real = REAL_SVS if REAL_SVS.exists() else inp / "cohort" / "case000" / "he.svs"
    data = real.read_bytes()
    (bad / "truncated.svs").write_bytes(data[: len(data) // 3])
    (bad / "huge.png").write_bytes(_png(60000, 60000, lambda y: bytes(7500), bit_depth=1))
    (bad / "tiny.png").write_bytes(_png(1, 1, lambda y: b"\xff"))
    (bad / "blank.png").write_bytes(_png(512, 512, lambda y: b"\xff" * 512))
    (bad / "folder.svs").mkdir()
    (bad / "dangling.svs").symlink_to(bad / "nowhere.svs")
    return {slide_key(name): str(bad / name) for name in BAD_SLIDES}


def _tensors(path: Path) -> dict:
    from safetensors.numpy import load_file

    return load_file(str(path))


def _save_tensors(tensors: dict, path: Path) -> None:
    from safetensors.numpy import save_file

    save_file(tensors, str(path))


def _bundle_variant(src: Path, dst: Path, manifest=None, tensors=None) -> str:
    """Copy a bundle folder, then edit its manifest and/or its first weights file."""
    shutil.copytree(src, dst)
    if manifest is not None:
        meta = json.loads((dst / "bundle.json").read_text())
        manifest(meta)
        (dst / "bundle.json").write_text(json.dumps(meta))  # NaN goes out as bare NaN
    if tensors is not None:
        weights = sorted(dst.glob("*.safetensors"))[0]
        _save_tensors({k: tensors(v) for k, v in _tensors(weights).items()}, weights)
    return str(dst)


def _nan_all(array):
    return np.full_like(array, np.nan) if array.dtype.kind == "f" else array


def _wrong_shape(array):
    return array[..., :-1] if array.ndim and array.shape[-1] > 1 else array


def make_models(inp: Path, marker: Path) -> dict[str, str]:
    """Write malicious and broken model files and bundles."""
    import torch

    models = inp / "models"
    models.mkdir()
    torch.save({"model": Evil(marker)}, models / "evil.pt")
    torch.save(Evil(marker), models / "evil.pth")
    (models / "evil.safetensors").write_bytes(pickle.dumps(Evil(marker)))
    (models / "evil.json").write_bytes(pickle.dumps(Evil(marker)))
    clam = resources() / "models" / "clam_synthetic_demo"
    grading = resources() / "models" / "patch_grading_demo"
    her2net = resources() / "her2net_demo"
    evil_bundle = Path(_bundle_variant(clam, models / "clam_evil"))
    (evil_bundle / "model.safetensors").write_bytes((models / "evil.pt").read_bytes())

    def setter(key: str, value):
        def edit(meta):
            node = meta
            *path, last = key.split(".")
            for part in path:
                node = node.setdefault(part, {})
            node[last] = value

        return edit

    def dropper(key: str):
        return lambda meta: meta.pop(key, None)

    out = {
        "evil_pt": str(models / "evil.pt"),
        "evil_pth": str(models / "evil.pth"),
        "evil_safetensors": str(models / "evil.safetensors"),
        "evil_json": str(models / "evil.json"),
        "clam_evil": str(evil_bundle),
        "clam_nan": _bundle_variant(clam, models / "clam_nan", tensors=_nan_all),
        "clam_shape": _bundle_variant(clam, models / "clam_shape", tensors=_wrong_shape),
        "clam_schema_abc": _bundle_variant(clam, models / "c1", setter("schema_version", "abc")),
        "clam_schema_null": _bundle_variant(clam, models / "c2", setter("schema_version", None)),
        "clam_neg_classes": _bundle_variant(clam, models / "c3", setter("config.n_classes", -2)),
        "clam_nan_config": _bundle_variant(clam, models / "c4", setter("config.dropout", math.nan)),
        "clam_huge_embed": _bundle_variant(clam, models / "c5", setter("config.embed_dim", 10**9)),
        "clam_no_kind": _bundle_variant(clam, models / "c6", dropper("model_kind")),
        "grading_nan": _bundle_variant(grading, models / "g_nan", tensors=_nan_all),
        "grading_input0": _bundle_variant(grading, models / "g0", setter("input_size", 0)),
        "grading_schema_abc": _bundle_variant(
            grading, models / "g1", setter("schema_version", "abc")
        ),
        "her2net_no_segmenter": _bundle_variant(her2net, models / "h1", dropper("segmenter")),
        "her2net_tile_x": _bundle_variant(her2net, models / "h2", setter("tile_size", "x")),
        "her2net_nan": _bundle_variant(her2net, models / "h3", tensors=_nan_all),
        "not_json_bundle": str(models / "evil.json"),
    }
    (models / "h4").mkdir()
    for item in her2net.iterdir():
        if item.name != "segmenter.safetensors":
            shutil.copy(item, models / "h4" / item.name)
    out["her2net_missing_weights"] = str(models / "h4")
    out.update(make_zips(models, clam))
    return out


def make_zips(models: Path, clam: Path) -> dict[str, str]:
    """A zip-slip bundle and a zip bomb (1 GiB of zeros in about 1 MB)."""
    slip = models / "slip.zip"
    with zipfile.ZipFile(slip, "w") as archive:
        for item in clam.iterdir():
            archive.write(item, item.name)
        archive.writestr("../../../../zipslip_" + MARKER, "x")
        archive.writestr("/tmp/zipslip_abs_" + MARKER, "x")
    bomb = models / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.write(clam / "bundle.json", "bundle.json")
        with archive.open("model.safetensors", "w", force_zip64=True) as member:
            block = bytes(1 << 20)
            for _ in range(1024):
                member.write(block)
    return {"zip_slip": str(slip), "zip_bomb": str(bomb)}


def make_features(inp: Path, good: Path, good_coords: Path) -> dict[str, str]:
    """Features and coords h5 files with non-finite values, wrong shapes, missing datasets."""
    import h5py

    folder = inp / "h5"
    folder.mkdir()
    with h5py.File(good, "r") as handle:
        feats, coords = handle["features"][:], handle["coords"][:]
    with h5py.File(good_coords, "r") as handle:
        coord_attrs = dict(handle["coords"].attrs)

    def features(name: str, values=None, coords_=None, drop: str = "") -> str:
        path = folder / f"{name}.h5"
        with h5py.File(path, "w") as handle:
            if drop != "features":
                handle["features"] = feats if values is None else values
            if drop != "coords":
                handle["coords"] = coords if coords_ is None else coords_
        return str(path)

    def patches(name: str, attrs: dict | None = None, values=None) -> str:
        path = folder / f"{name}"
        path.mkdir()
        with h5py.File(path / "he.h5", "w") as handle:
            data = handle.create_dataset("coords", data=coords if values is None else values)
            for key, value in {**coord_attrs, **(attrs or {})}.items():
                data.attrs[key] = value
        return str(path / "he.h5")

    one_nan, one_inf = feats.copy(), feats.copy()
    one_nan[0, 0], one_inf[-1, -1] = np.nan, np.inf
    out = {
        "feat_nan": features("nan", one_nan),
        "feat_inf": features("inf", one_inf),
        "feat_huge": features("huge", np.full_like(feats, 3e38)),
        "feat_dims": features("dims", feats[:, :512]),
        "feat_1d": features("oned", feats[:, 0]),
        "feat_empty": features("empty", feats[:0], coords[:0]),
        "feat_no_features": features("nofeat", drop="features"),
        "feat_no_coords": features("nocoords", drop="coords"),
        "coords_level99": patches("lvl", {"patch_level": 99}),
        "coords_size0": patches("size0", {"patch_size": 0}),
        "coords_size_neg": patches("sizeneg", {"patch_size": -256}),
        "coords_size_huge": patches("sizehuge", {"patch_size": 10**9}),
        "coords_nan": patches("cnan", values=np.full(coords.shape, np.nan)),
        "coords_negative": patches("cneg", values=-np.abs(coords) - 5000),
        "coords_offslide": patches("coff", values=coords + 10**7),
    }
    (folder / "text.h5").write_text("not an h5 file\n")
    out["feat_text"] = str(folder / "text.h5")
    return out


def make_tables(inp: Path, ctx: dict[str, str]) -> dict[str, str]:
    """Cohort, study, answers and predictions CSVs with traversal, formulas and odd numbers."""
    folder = inp / "csv"
    folder.mkdir()
    he = ctx["he"]
    sandbox_abs = "/tmp/probe_abs_" + MARKER
    hostile_ids = ["../../../../../traversal_" + MARKER, sandbox_abs, '=HYPERLINK("http://x","y")']
    out = {}
    for i, case_id in enumerate(hostile_ids):
        out[f"cohort_id{i}"] = str(
            _write_csv(
                folder / f"cohort{i}.csv",
                [
                    ["case_id", "he_path", "ihc_path", "ihc_score", "her2_status", "patient_id"],
                    [case_id, he, ctx["ihc"], "3", "positive", "P1"],
                ],
            )
        )
    cases = [["case_id", "he_path", "ihc_path"]]
    cases += [[f"c{i}", he, ctx["ihc"]] for i in range(4)] + [["=cmd|' /C calc'!A0", he, he]]
    out["study_cases_formula"] = str(_write_csv(folder / "cases_formula.csv", cases))
    out["study_cases_traversal"] = str(
        _write_csv(
            folder / "cases_trav.csv",
            [["case_id", "he_path", "ihc_path"], ["../../s_" + MARKER, "../../../etc/passwd", he]],
        )
    )
    for name, seconds in (("inf", "inf"), ("huge", "1e308"), ("neg", "-5"), ("nan", "nan")):
        out[f"answers_{name}"] = str(
            _write_csv(
                folder / f"answers_{name}.csv",
                [
                    ["reader", "case_id", "answer", "confidence", "arm", "seconds"],
                    ["a", "c0", "positive", "", "unassisted", seconds],
                ],
            )
        )
    out["answers_extra"] = str(
        _write_csv(
            folder / "answers_extra.csv",
            [["reader", "case_id", "answer"], ["a", "c0", "positive", "surplus", "more"]],
        )
    )
    out["answers_formula"] = str(
        _write_csv(
            folder / "answers_formula.csv",
            [["reader", "case_id", "answer"], ["@SUM(1+1)*cmd", "c0", "positive"]],
        )
    )
    preds = [["case_id", "truth", "prediction", "probability"]]
    preds += [
        [
            f"c{i}",
            ["negative", "positive"][i % 2],
            ["negative", "positive"][i % 2],
            f"{0.2 + 0.6 * (i % 2)}",
        ]
        for i in range(8)
    ]
    out["preds"] = str(_write_csv(folder / "preds.csv", preds))
    out["preds_formula"] = str(
        _write_csv(
            folder / "preds_formula.csv", preds + [["=HYPERLINK(1)", "positive", "positive", "0.9"]]
        )
    )
    out["preds_inf"] = str(
        _write_csv(folder / "preds_inf.csv", preds + [["x", "positive", "positive", "inf"]])
    )
    out["preds_nan"] = str(
        _write_csv(folder / "preds_nan.csv", preds + [["x", "negative", "negative", "nan"]])
    )
    return out


def make_training_set(inp: Path, h5_files: Path) -> dict[str, str]:
    """Six bags (copies of the cohort's features), three per class, for ``clam train``."""
    folder = inp / "train" / "h5_files"
    folder.mkdir(parents=True)
    sources = sorted(h5_files.glob("*.h5"))
    rows = [["slide_id", "label"]]
    for i in range(6):
        shutil.copy(sources[i % len(sources)], folder / f"s{i}.h5")
        rows.append([f"s{i}", ["negative", "positive"][i % 2]])
    labels = _write_csv(inp / "train" / "labels.csv", rows)
    return {"train_dir": str(folder.parent), "train_labels": str(labels)}


def make_registrations(inp: Path) -> dict[str, str]:
    """Registration JSONs: singular, overflowing, NaN, wrong shape, not JSON."""
    folder = inp / "reg"
    folder.mkdir()
    matrices = {
        "reg_singular": [[1, 0, 0], [0, 1, 0], [0, 0, 0]],
        "reg_zero": [[0, 0, 0], [0, 0, 0], [0, 0, 1]],
        "reg_huge": [[1e300, 0, 0], [0, 1e300, 0], [0, 0, 1]],
        "reg_nan": [[math.nan, 0, 0], [0, 1, 0], [0, 0, 1]],
        "reg_2x2": [[1, 0], [0, 1]],
    }
    out = {}
    for name, matrix in matrices.items():
        (folder / f"{name}.json").write_text(json.dumps({"matrix": matrix, "method": "probe"}))
        out[name] = str(folder / f"{name}.json")
    (folder / "garbage.json").write_text("{ not json")
    out["reg_garbage"] = str(folder / "garbage.json")
    return out


def make_radiomics(inp: Path) -> dict[str, str]:
    """Twelve tiny NRRD volumes with ROIs and their cases CSV."""
    from her2viewer.radiomics.volume import Volume, write_nrrd

    folder = inp / "rad"
    folder.mkdir()
    rng = np.random.default_rng(0)
    rows = [["case_id", "image", "mask", "label"]]
    for i in range(12):
        image = rng.normal(100 + 40 * (i % 2), 10 + 20 * (i % 2), (8, 16, 16)).astype(np.int16)
        mask = np.zeros(image.shape, np.uint8)
        mask[2:6, 4 : 10 + i % 3, 4:12] = 1
        write_nrrd(folder / f"img{i}.nrrd", Volume(image, (2.0, 0.8, 0.8)))
        write_nrrd(folder / f"roi{i}.nrrd", Volume(mask, (2.0, 0.8, 0.8)))
        rows.append([f"c{i}", f"img{i}.nrrd", f"roi{i}.nrrd", ["negative", "positive"][i % 2]])
    _write_csv(folder / "cases.csv", rows)
    return {
        "radcases": str(folder / "cases.csv"),
        "radimg": str(folder / "img1.nrrd"),
        "radmask": str(folder / "roi1.nrrd"),
        "radfeats": str(folder / "features.csv"),
        "radmodel": str(folder / "model.json"),
    }


def build_inputs(root: Path, env: dict, quick: bool = False) -> dict[str, str]:
    """Generate every input once; return the placeholder table for the probe templates.

    ``quick`` builds only the cohort and the bad slides (all the quick probes need).
    """
    inp = root / "inputs"
    inp.mkdir(parents=True)
    _run_setup(["demo-data", "cohort", "--cases", "4", "--size", "2000x1600"], env, inp)
    ctx = {
        "labels": str(inp / "cohort" / "labels.csv"),
        "he": str(inp / "cohort" / "case000" / "he.svs"),
        "ihc": str(inp / "cohort" / "case003" / "ihc.svs"),
        "other_he": str(inp / "cohort" / "case001" / "he.svs"),
        "clam": str(resources() / "models" / "clam_synthetic_demo"),
        "grading": str(resources() / "models" / "patch_grading_demo"),
        "her2net": str(resources() / "her2net_demo"),
        "marker": str(root / "sandboxes" / MARKER),
    }
    feats = inp / "feats"
    extract = ["--random-weights", "0", "--device", "cpu", "--workers", "1"]
    ctx.update(make_slides(inp))
    if quick:
        return ctx
    _run_setup(["extract", ctx["labels"], "-o", str(feats), *extract], env, inp)
    ctx.update(feats_dir=str(feats), feat=str(feats / "h5_files" / "case000.h5"))
    ctx["ref_features"] = ctx["feat"]
    ctx.update(make_training_set(inp, feats / "h5_files"))
    ctx.update(make_models(inp, Path(ctx["marker"])))
    ctx.update(make_features(inp, Path(ctx["feat"]), feats / "patches" / "case000.h5"))
    ctx.update(make_tables(inp, ctx))
    ctx.update(make_registrations(inp))
    ctx.update(make_radiomics(inp))
    _run_setup(["ihc", "train-baseline", ctx["labels"], "-o", str(inp / "baseline.json")], env, inp)
    _run_setup(["radiomics", "extract-batch", ctx["radcases"], "--out", ctx["radfeats"]], env, inp)
    _run_setup(
        ["radiomics", "train", ctx["radfeats"], "--out", ctx["radmodel"], "--folds", "2"], env, inp
    )
    ctx["baseline"] = str(inp / "baseline.json")
    study = inp / "study.h2study"
    cases = _write_csv(
        inp / "csv" / "cases.csv",
        [["case_id", "he_path", "ihc_path"]] + [[f"c{i}", ctx["he"], ctx["ihc"]] for i in range(6)],
    )
    truth = _write_csv(
        inp / "csv" / "truth.csv",
        [["case_id", "truth"]] + [[f"c{i}", ["negative", "positive"][i % 2]] for i in range(6)],
    )
    answers = _write_csv(
        inp / "csv" / "answers.csv",
        [["reader", "case_id", "answer"]]
        + [
            [r, f"c{i}", ["negative", "positive"][(i + (r == "b")) % 2]]
            for r in ("a", "b")
            for i in range(6)
        ],
    )
    _run_setup(
        [
            "study",
            "create",
            str(study),
            "--cases",
            str(cases),
            "--question",
            "status",
            "--truth",
            str(truth),
            "--readers",
            "a,b",
            "--seed",
            "1",
        ],
        env,
        inp,
    )
    _run_setup(["study", "import", str(study), str(answers)], env, inp)
    corrupt = bytearray(study.read_bytes())
    for offset in range(4096, len(corrupt), 997):
        corrupt[offset] ^= 0xFF
    (inp / "corrupt.h2study").write_bytes(bytes(corrupt))
    ctx.update(
        study_src=str(study),
        study_cases=str(cases),
        study_truth=str(truth),
        corrupt_src=str(inp / "corrupt.h2study"),
    )
    ctx["report_src"] = str(inp / "report")
    _run_setup(
        ["study", "report", str(study), "-o", ctx["report_src"], "--bootstrap", "20"], env, inp
    )
    from her2viewer.demo import ensure_demo_case

    ensure_demo_case()  # HER2VIEWER_CACHE is set: reused by every probe
    return ctx


# --------------------------------------------------------------------------- sandbox preparations


def _mount(point: Path, options: str) -> None:
    point.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)], check=True)


def _fill(point: Path) -> None:
    with contextlib.suppress(OSError), (point / ".filler").open("wb") as handle:
        while True:
            handle.write(b"\1" * 4096)
            handle.flush()


def prep_full_disk(out: Path, ctx: dict) -> None:
    _mount(out / "disk", "size=64k")
    _fill(out / "disk")


def prep_read_only(out: Path, ctx: dict) -> None:
    _mount(out / "disk", "ro,size=64k")


def prep_blocker(out: Path, ctx: dict) -> None:
    (out / "blocker").write_text("a regular file where a folder is expected\n")
    (out / "folder.out").mkdir()
    (out / "folder.out" / "keep.txt").write_text("a folder where a file is expected\n")


def prep_study(out: Path, ctx: dict) -> None:
    shutil.copy(ctx["study_src"], out / "study.h2study")
    shutil.copy(ctx["corrupt_src"], out / "corrupt.h2study")
    shutil.copytree(ctx["report_src"], out / "report")


def _prep_coords(key: str) -> Callable[[Path, dict], None]:
    def prep(out: Path, ctx: dict) -> None:
        (out / "f" / "patches").mkdir(parents=True)
        shutil.copy(ctx[key], out / "f" / "patches" / "he.h5")

    return prep


def prep_other_slide(out: Path, ctx: dict) -> None:
    """Outputs of case001's he.svs where case000's he.svs will be extracted (same stem)."""
    shutil.copytree(Path(ctx["feats_dir"]) / "h5_files", out / "f" / "h5_files")
    shutil.copytree(Path(ctx["feats_dir"]) / "patches", out / "f" / "patches")
    for folder in ("h5_files", "patches"):
        os.replace(out / "f" / folder / "case001.h5", out / "f" / folder / "he.h5")


#: Coordinates reused by extract: an error, or features recomputed from the slide itself.
COORDS = ("coords_level99", "coords_size0", "coords_size_neg", "coords_size_huge",
          "coords_nan", "coords_negative", "coords_offslide")  # fmt: skip
PREPS: dict[str, Callable[[Path, dict], None]] = {
    "full_disk": prep_full_disk,
    "read_only": prep_read_only,
    "blocker": prep_blocker,
    "study": prep_study,
    "other_slide": prep_other_slide,
    **{f"coords:{key}": _prep_coords(key) for key in COORDS},
}


# --------------------------------------------------------------------------- probe tables

#: Verbs that read a slide: args with ``{slide}``; the last field is due on a blank image.
SLIDE_VERBS = (
    ("info", "{slide}", "clean"),
    ("segment", "{slide} -o {out}/seg", "clean"),
    ("patch", "{slide} -o {out}/c.h5", "not_evaluable"),
    ("ihc score", "{slide}", "not_evaluable"),
    ("ihc score", "{slide} --json", "not_evaluable"),
    ("ihc predict-baseline", "{baseline} {slide}", "not_evaluable"),
    ("register", "{he} {slide} -o {out}/r.json", "not_evaluable"),
    ("extract", "{slide} -o {out}/f --random-weights 0 --device cpu", "not_evaluable"),
    ("clam heatmap", "{slide} --model {clam} -o {out}/h.png --device cpu", "not_evaluable"),
    ("view", "{slide} --screenshot {out}/v.png --size 640x400", "clean"),
    ("grade predict", "{slide} --device cpu --limit 4 --tumor none", "not_evaluable"),
    (
        "grade gradcam",
        "{slide} --out {out}/g.npy --device cpu --limit 2 --tumor none",
        "not_evaluable",
    ),
    ("her2net predict", "{slide} --out {out}/p --device cpu --threads 1", "not_evaluable"),
)
BLANK_SLIDES = ("bad_blank_png", "bad_tiny_png")

#: Verbs that write: (verb, args with ``{o}``, what ``{o}`` is: folder or file suffix).
WRITER_VERBS = (
    ("segment", "{he} -o {o}", ""),
    ("patch", "{he} -o {o}", ".h5"),
    ("register", "{he} {ihc} -o {o}", ".json"),
    ("extract", "{he} -o {o} --random-weights 0 --device cpu", ""),
    ("clam heatmap", "{he} --model {clam} -o {o} --device cpu", ".png"),
    ("clam heatmap", "{he} --model {clam} -o {out}/h.png --tiff {o} --device cpu", ".tif"),
    ("study create", "{o} --cases {study_cases} --question status", ".h2study"),
    ("study export", "{out}/study.h2study -o {o}", ".csv"),
    ("study report", "{out}/study.h2study -o {o} --bootstrap 20", ""),
    ("view", "{he} --screenshot {o} --size 640x400", ".png"),
    ("her2net predict", "{he} --out {o} --device cpu --threads 1", ""),
    ("grade predict", "{ihc} --out {o} --device cpu --limit 4 --tumor none", ".json"),
    ("grade gradcam", "{ihc} --out {o} --device cpu --limit 2 --tumor none", ".npy"),
    ("ihc score", "{ihc} --map {o}", ".png"),
    ("ihc train-baseline", "{labels} -o {o}", ".json"),
    ("evaluate", "{preds} -o {o}", ""),
    ("radiomics extract-batch", "{radcases} --out {o}", ".csv"),
    ("radiomics train", "{radfeats} --out {o} --folds 2", ".json"),
    ("demo-data", "{o} --cases 1 --size 800x600", ""),
)

#: Hand-written probes, one a line: ``verb | expect | name | args [| prep [| outputs]]``;
#: an indented line continues the one above it.
TABLE = """
clam infer | error | pickle checkpoint | --model {evil_pt} --features {feat}
clam infer | error | pickle in bundle | --model {clam_evil} --features {feat}
clam infer | error | pickle features .pt | --model {clam} --features {evil_pt}
clam heatmap | error | pickle checkpoint | {he} --model {evil_pth} --encoder resnet50_trunc -o
    {out}/h.png
extract | error | pickle encoder weights | {he} -o {out}/f --encoder-weights {evil_pt} --device
    cpu
extract | error | pickle named .safetensors | {he} -o {out}/f --encoder-weights
    {evil_safetensors} --device cpu
extract | error | pickle as torchscript | {he} -o {out}/f --encoder torchscript:{evil_pt}
    --device cpu
grade predict | error | pickle weights | {ihc} --model {evil_pt} --arch resnet34 --device cpu
her2net predict | error | pickle bundle | {he} --model {evil_pt} --device cpu
ihc predict-mil | error | pickle bundle | {evil_pt} {ihc}
ihc predict-baseline | error | pickle as JSON model | {evil_json} {ihc}
radiomics predict | error | pickle as model | {evil_json} {radimg} {radmask}
radiomics evaluate | error | pickle as model | {evil_json} {radfeats}
radiomics evaluate | error | not a features CSV | {radmodel} {preds_formula}
clam infer | error | NaN weights | --model {clam_nan} --features {feat}
clam infer | error | wrong shapes | --model {clam_shape} --features {feat}
clam infer | error | schema abc | --model {clam_schema_abc} --features {feat}
clam infer | error | schema null | --model {clam_schema_null} --features {feat}
clam infer | error | n_classes -2 | --model {clam_neg_classes} --features {feat}
clam infer | error | NaN config | --model {clam_nan_config} --features {feat}
clam infer | error | embed 1e9 | --model {clam_huge_embed} --features {feat}
clam infer | error | no model_kind | --model {clam_no_kind} --features {feat}
clam infer | clean | zip-slip | --model {zip_slip} --features {feat}
clam infer | error | zip bomb | --model {zip_bomb} --features {feat}
clam infer | error | not a bundle | --model {not_json_bundle} --features {feat}
grade predict | error | NaN grading head | {ihc} --model {grading_nan} --device cpu --limit
    4 --tumor none
grade predict | error | input_size 0 | {ihc} --model {grading_input0} --device cpu --limit 4
    --tumor none
grade predict | error | schema abc | {ihc} --model {grading_schema_abc} --device cpu --limit
    4 --tumor none
her2net predict | error | no segmenter | {he} --model {her2net_no_segmenter} --device cpu
her2net predict | error | tile_size x | {he} --model {her2net_tile_x} --device cpu
her2net predict | error | NaN weights | {he} --model {her2net_nan} --device cpu
her2net predict | error | missing weights file | {he} --model {her2net_missing_weights}
    --device cpu
clam infer | error | one NaN feature | --model {clam} --features {feat_nan}
clam infer | error | one Inf feature | --model {clam} --features {feat_inf}
clam infer | error | 3e38 features | --model {clam} --features {feat_huge}
clam infer | error | 512-d features | --model {clam} --features {feat_dims}
clam infer | error | 1-d features | --model {clam} --features {feat_1d}
clam infer | error | 0 patches | --model {clam} --features {feat_empty}
clam infer | error | no features | --model {clam} --features {feat_no_features}
clam infer | clean | no coords | --model {clam} --features {feat_no_coords}
clam infer | error | text as h5 | --model {clam} --features {feat_text}
clam infer | error | missing file | --model {clam} --features {bad_missing_svs}
embed | error | other encoder's features | {feat} --encoder titan --small --random-seed 0
    --device cpu -o {out}/e.h5
embed | error | pickle weights | {feat} --encoder titan --weights {evil_pt} --device cpu -o
    {out}/e.h5
embed | error | text as h5 | {feat_text} --encoder titan --small --random-seed 0 --device cpu
    -o {out}/e.h5
extract | ref_or_error | same stem, other slide | {he} -o {out}/f --random-weights 0 --device
    cpu | other_slide
extract | clean | case_id ../../x | {cohort_id0} -o {out}/f --random-weights 0 --device cpu
extract | clean | case_id absolute | {cohort_id1} -o {out}/f --random-weights 0 --device cpu
extract | clean | case_id formula | {cohort_id2} -o {out}/f --random-weights 0 --device cpu
her2net evaluate | clean | case_id ../../x | --cohort {cohort_id0} --device cpu --threads 1 -o
    {out}/e.json
study create | clean | case_id ../../x | {out}/s.h2study --cases {study_cases_traversal}
    --question status
study create | clean | case_id formula | {out}/s.h2study --cases {study_cases_formula}
    --question status
study import | error | seconds inf | {out}/study.h2study {answers_inf} | study
study import | error | seconds huge | {out}/study.h2study {answers_huge} | study
study import | error | seconds neg | {out}/study.h2study {answers_neg} | study
study import | error | seconds nan | {out}/study.h2study {answers_nan} | study
study import | error | extra columns | {out}/study.h2study {answers_extra} | study
study import | clean | reader formula | {out}/study.h2study {answers_formula} | study
study export | ok | formula escaping | {out}/study.h2study -o {out}/e.csv | study | {out}/e.csv
evaluate | clean | case_id formula | {preds_formula} -o {out}/ev
evaluate | error | probability inf | {preds_inf} -o {out}/ev
evaluate | error | probability nan | {preds_nan} -o {out}/ev
evaluate | ok | valid predictions | {preds} -o {out}/ev |  | {out}/ev/metrics.json
study status | error | flipped bytes | {out}/corrupt.h2study | study
study export | error | flipped bytes | {out}/corrupt.h2study -o {out}/x.csv | study
study report | error | flipped bytes | {out}/corrupt.h2study -o {out}/r | study
study import | error | flipped bytes | {out}/corrupt.h2study {study_cases} | study
study results | error | not a report | {bad_random_png}
study results | clean | valid report | {out}/report | study
view | error | size 60000 | {he} --screenshot {out}/v.png --size 60000x60000
view | error | size 0x0 | {he} --screenshot {out}/v.png --size 0x0
view | error | center nan | {he} --screenshot {out}/v.png --center nan,nan
view | ok | valid screenshot | {he} --screenshot {out}/v.png --size 640x400 |  | {out}/v.png
view | ok | demo screenshot | --demo --screenshot {out}/v.png --size 640x400 |  | {out}/v.png
clam heatmap | error | overlap 1.0 | {he} --model {clam} -o {out}/h.png --overlap 1.0
clam heatmap | error | overlap 0.99 | {he} --model {clam} -o {out}/h.png --overlap 0.99
her2net predict | demo_notice | default bundle | {he} --device cpu --threads 1
her2net predict | demo_notice | default, JSON | {he} --device cpu --threads 1 --json
grade predict | demo_notice | default bundle | {ihc} --device cpu --limit 4 --tumor none
grade predict | demo_notice | default, JSON | {ihc} --device cpu --limit 4 --tumor none
    --json
clam infer | demo_notice | demo bundle | --model {clam} --features {feat}
clam infer | demo_notice | demo bundle JSON | --model {clam} --features {feat} --json
demo | demo_notice | demo case
info | ok | valid slide | {he}
"""
REGISTRATIONS = ("reg_singular", "reg_zero", "reg_huge", "reg_nan", "reg_2x2", "reg_garbage")


def table_probes() -> list[Probe]:
    """The probes of :data:`TABLE`, the reused coordinates and the registration files."""
    probes = []
    for line in TABLE.replace("\n    ", " ").strip().splitlines():
        fields = [field.strip() for field in line.split(" | ")] + ["", "", ""]
        verb, expect, name, args, prep, outputs = fields[:6]
        probes.append(Probe(verb, args, expect, name, prep, tuple(filter(None, [outputs]))))
    extract = "{he} -o {out}/f --random-weights 0 --device cpu"
    probes += [Probe("extract", extract, "ref_or_error", key, f"coords:{key}") for key in COORDS]
    view = "{he} {ihc} --screenshot {out}/v.png --size 640x400 --transform"
    probes += [Probe("view", f"{view} {{{key}}}", "error", key) for key in REGISTRATIONS]
    return probes


#: Without a display, the reading apps must refuse in one sentence or fall back, not abort.
NO_DISPLAY = (("QT_QPA_PLATFORM", None), ("DISPLAY", None), ("WAYLAND_DISPLAY", None))
HEADLESS = (
    Probe(
        "study read",
        "{out}/study.h2study --reader a",
        "clean",
        "no display",
        "study",
        env=NO_DISPLAY,
    ),
    Probe("study results", "{out}/report", "clean", "no display", "study", env=NO_DISPLAY),
    # without a display `view` renders to ./view.png, its documented output (as make run does)
    Probe(
        "view",
        "{he} --size 640x400",
        "clean",
        "no display, no screenshot",
        env=NO_DISPLAY,
        outputs=("{cwd}/view.png",),
    ),
)

#: Verbs that read nothing (they print a table): they must simply work.
NO_INPUT = (
    Probe("encoders list", "--json", "ok", "no input"),
    Probe("encoders list", "--slide --json", "ok", "slide encoders"),
)

#: Valid, cheap arguments per verb: the base that one abused numeric option is added to.
BASES = {
    "demo-data": "{out}/d --cases 1 --size 800x600",
    "segment": "{he} -o {out}/seg",
    "patch": "{he} -o {out}/c.h5",
    "ihc train-mil": "{labels} -o {out}/mil --features-dir {out}/fc --random-weights 0 "
    "--epochs 1 --device cpu",
    "extract": "{he} -o {out}/f --random-weights 0 --device cpu",
    "clam heatmap": "{he} --model {clam} -o {out}/h.png --device cpu",
    "clam train": "--features-dir {train_dir} --labels {train_labels} -o {out}/t --folds 3 "
    "--max-epochs 2 --min-epochs 1 --patience 1 --k-sample 2 --threads 1",
    "study create": "{out}/s.h2study --cases {study_cases} --question status --seed 1",
    "study report": "{out}/study.h2study -o {out}/r --bootstrap 20 --seed 0",
    "study mcnemar-range": "--cases 10 --correct-a 5 --correct-b 6",
    "view": "{he} --screenshot {out}/v.png --size 640x400",
    "grade train": "{labels} --out {out}/g --limit 2 --input-size 32 --batch-size 4 "
    "--device cpu --tumor none",
    "grade predict": "{ihc} --device cpu --limit 4 --tumor none",
    "grade gradcam": "{ihc} --out {out}/g.npy --device cpu --limit 2 --tumor none",
    "her2net train": "--cohort {labels} -o {out}/b --seg-epochs 1 --cls-epochs 1 --tile-size 256 "
    "--magnification 2 --seg-width 4 --seg-depth 2 --cls-width 4 --classifier resnet18 "
    "--batch-size 8 --device cpu --threads 1",
    "her2net predict": "{he} --out {out}/p --device cpu --threads 1",
    "her2net evaluate": "--cohort {labels} --device cpu --threads 1",
    "radiomics extract": "{radimg} {radmask}",
    "radiomics extract-batch": "{radcases} --out {out}/rf.csv",
    "radiomics train": "{radfeats} --out {out}/rm.json --folds 2",
    "radiomics predict": "{radmodel} {radimg} {radmask}",
}
HUGE_INT = "1000000000000"
INT_ABUSE = (("-1", "clean"), (HUGE_INT, "clean"), ("nan", "error"), ("x", "error"))
FLOAT_ABUSE = (("nan", "error"), ("inf", "error"), ("-1", "clean"), ("x", "error"))


def leaf_parsers(parser: argparse.ArgumentParser, prefix: str = ""):
    """Yield ``(verb, parser)`` for every leaf verb of the command line (aliases once)."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield prefix, parser
        return
    seen = set()
    for name, sub in subs[0].choices.items():
        if id(sub) not in seen:
            seen.add(id(sub))
            yield from leaf_parsers(sub, f"{prefix} {name}".strip())


def _with_option(base: str, option: str, value: str) -> str:
    """The base arguments with ``option`` set to ``value`` (replaced when the base has it)."""
    words = base.split()
    if option in words:
        words[words.index(option) + 1] = value
        return " ".join(words)
    return f"{base} {option} {value}"


def numeric_probes(parser: argparse.ArgumentParser) -> list[Probe]:
    """One probe per int/float option of every verb and per abusive value."""
    probes = []
    for verb, leaf in leaf_parsers(parser):
        for action in leaf._actions:
            kind = getattr(action.type, "__name__", "")  # int, float or a bounded() parser
            abuse = {"int": INT_ABUSE, "float": FLOAT_ABUSE}.get(kind)
            if abuse is None or not action.option_strings:
                continue
            option = max(action.option_strings, key=len)
            base = BASES.get(verb, "")
            prep = "study" if "{out}/study" in base else ""
            if "train" in verb:  # a huge epoch or fold count is a long run, not a defect
                abuse = [(value, expect) for value, expect in abuse if value != HUGE_INT]
            for value, expect in abuse:
                args = _with_option(base, option, value)
                probes.append(Probe(verb, args, expect, f"{option} {value}", prep, option=option))
    return probes


def missing_input_probes(parser: argparse.ArgumentParser) -> list[Probe]:
    """One probe per verb (new verbs included) whose every required input is a missing file."""
    probes = []
    for verb, leaf in leaf_parsers(parser):
        words = []
        for action in leaf._actions:
            output = {"out", "output"} & {action.dest}
            value = "{out}/new/x" if output else "{bad_missing_svs}"
            if not action.option_strings and action.nargs != "?":
                words.append(value)
            elif action.required:
                words += [max(action.option_strings, key=len), value]
        if "{bad_missing_svs}" in words:
            probes.append(Probe(verb, " ".join(words), "error", "missing input"))
    return probes


def all_probes(parser: argparse.ArgumentParser) -> list[Probe]:
    """Every probe: bad slides x slide verbs, writers x bad places, the table, option abuse."""
    slides = [slide_key(name) for name in BAD_SLIDES]
    probes = []
    for verb, args, blank in SLIDE_VERBS:
        for key in slides:
            if "--json" in args and key not in BLANK_SLIDES:
                continue
            expect = blank if key.replace("bad_", "") in ("blank_png", "tiny_png") else "error"
            if verb == "info" and key == "bad_huge_png":
                expect = "clean"
            probes.append(Probe(verb, args.replace("{slide}", f"{{{key}}}"), expect, key))
    places = (
        ("full disk", "full_disk", "{out}/disk/x"),
        ("read-only", "read_only", "{out}/disk/x"),
        ("under a file", "blocker", "{out}/blocker/sub/x"),
    )
    for verb, args, suffix in WRITER_VERBS:
        prep = "study" if "{out}/study" in args else ""
        for name, place_prep, target in places:
            full_prep = ",".join(p for p in (prep, place_prep) if p)
            probes.append(
                Probe(verb, args.replace("{o}", target + suffix), "error", name, full_prep)
            )
        wrong = "{out}/blocker" if not suffix else "{out}/folder.out"
        probes.append(
            Probe(
                verb,
                args.replace("{o}", wrong),
                "error",
                "file for folder" if not suffix else "folder for file",
                ",".join(p for p in (prep, "blocker") if p),
            )
        )
    probes += table_probes()
    probes += HEADLESS + NO_INPUT
    return probes + numeric_probes(parser) + missing_input_probes(parser)


#: ``--quick``: these probes of these verbs (they need only the cohort and the bad slides).
QUICK_NAMES = {"bad_empty_svs", "bad_random_png", "bad_blank_png", "bad_dangling_svs",
               "full disk", "--size x", "--sthresh nan", "valid slide"}  # fmt: skip
QUICK_VERBS = {"info", "ihc score", "segment", "patch"}


def is_quick(probe: Probe) -> bool:
    """Whether ``--quick`` runs this probe."""
    return probe.name in QUICK_NAMES and probe.verb in QUICK_VERBS


# --------------------------------------------------------------------------- running


def snapshot(folder: Path, skip: Path | None = None) -> dict[str, tuple[int, int]]:
    """Map every file under ``folder`` (but not under ``skip``) to its size and mtime."""
    state = {}
    for path in folder.rglob("*"):
        if skip is not None and (path == skip or skip in path.parents):
            continue
        with contextlib.suppress(OSError):
            if not path.is_dir():
                info = path.lstat()
                state[str(path)] = (info.st_size, info.st_mtime_ns)
    return state


def parse_rejects(parser: argparse.ArgumentParser, argv: list[str]) -> Outcome | None:
    """Run argparse alone; return its exit as an Outcome when it rejects ``argv``."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            parser.parse_args(argv)
        except SystemExit as exc:
            return Outcome(int(exc.code or 0), "", err.getvalue(), in_process=True)
        except Exception:  # noqa: BLE001 - a type function that raises: run it for real
            return None
    return None


def _env(base: dict, probe: Probe) -> dict:
    env = dict(base)
    for key, value in probe.env:
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def _limit_memory() -> None:
    """Cap a probe's address space so a decompression bomb cannot take the shared machine."""
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))


def _forked_verb(argv: list[str], env: dict, cwd: Path, log: Path) -> None:
    """In a forked child: run the verb as ``python -m her2viewer`` would, then exit."""
    code = 1
    try:
        os.setsid()
        _limit_memory()
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(env)
        for fd, suffix in ((1, ".out"), (2, ".err")):
            os.dup2(os.open(f"{log}{suffix}", os.O_WRONLY | os.O_CREAT | os.O_TRUNC), fd)
        sys.argv = ["her2viewer", *argv]
        from her2viewer.cli import main as verb_main

        code = verb_main(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (print(exc.code, file=sys.stderr) or 1)
    except BaseException:  # noqa: BLE001 - print it as the interpreter would
        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


@dataclass
class Running:
    """A started verb: a subprocess, or a forked child of this (pre-imported) process."""

    pid: int
    log: Path
    deadline: float
    popen: subprocess.Popen | None = None

    @classmethod
    def start(cls, argv: list[str], env: dict, cwd: Path, log: Path, timeout: float, fork: bool):
        deadline = time.monotonic() + timeout
        if fork:
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                _forked_verb(argv, env, cwd, log)
            return cls(pid, log, deadline)
        with open(f"{log}.out", "w") as out, open(f"{log}.err", "w") as err:
            popen = subprocess.Popen(
                [sys.executable, "-m", "her2viewer", *argv],
                cwd=cwd,
                env=env,
                stdout=out,
                stderr=err,
                start_new_session=True,
                preexec_fn=_limit_memory,
            )
        return cls(popen.pid, log, deadline, popen)

    def poll(self) -> Outcome | None:
        """The outcome once the verb has ended (killed at its deadline), else None."""
        timed_out = time.monotonic() > self.deadline
        if timed_out:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
        if self.popen is not None:
            code = self.popen.wait() if timed_out else self.popen.poll()
        else:
            done, status = os.waitpid(self.pid, 0 if timed_out else os.WNOHANG)
            code = None if done == 0 else os.waitstatus_to_exitcode(status)
        if code is None:
            return None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)  # helpers the verb left behind
        read = lambda suffix: Path(f"{self.log}{suffix}").read_text(errors="replace")  # noqa: E731
        return Outcome(code, read(".out"), read(".err"), timed_out=timed_out)


def _formula_cells(folder: Path) -> list[str]:
    found = []
    for path in folder.rglob("*.csv"):
        with contextlib.suppress(OSError, UnicodeDecodeError, csv.Error):
            for row in csv.reader(path.read_text().splitlines()):
                found += [f"{path.name}: {c[:30]}" for c in row if c.startswith(FORMULA_PAYLOADS)]
    return found


def _same_as_reference(features: Path, reference: str) -> bool:
    import h5py

    with h5py.File(features, "r") as got, h5py.File(reference, "r") as ref:
        a, b = got["features"][:], ref["features"][:]
    return a.shape == b.shape and bool(np.allclose(a, b, atol=1e-4))


def found_markers(ctx: dict) -> list[str]:
    """Marker files a pickle payload, a zip-slip member or a traversing case id created."""
    places = (Path("/"), Path("/tmp"), Path(ctx["sandboxes"]))
    return [str(p) for place in places for p in place.glob(f"*{MARKER}*")]


def _outside(job: Job, ctx: dict) -> list[str]:
    after = {**snapshot(job.root, skip=job.out), **snapshot(Path(ctx["inputs"]))}
    return [p for p, state in after.items() if job.before.get(p) != state]


def post_checks(job: Job, outcome: Outcome, ctx: dict) -> str | None:
    """Failure kinds found on disk after a probe: marker, files outside, leftovers, outputs."""
    probe, out = job.probe, job.out
    markers = found_markers(ctx)
    if markers:
        outcome.extra.append(f"marker: {markers[:2]}")
        for marker in markers:
            with contextlib.suppress(OSError):
                os.unlink(marker)
        return "code_executed" if "pickle" in probe.name else "written_outside"
    declared = [Path(t.format(out=out, cwd=out.parent)) for t in probe.outputs]
    changed = [p for p in _outside(job, ctx) if Path(p) not in declared]
    if changed:
        outcome.extra.append(f"outside: {changed[:3]}")
        return "written_outside"
    new = {p: s for p, s in snapshot(out).items() if p not in job.out_before}
    left = [p for p, (size, _) in new.items() if size == 0 or p.endswith((".partial", ".tmp"))]
    left = [p for p in left if not p.endswith(NOT_OUTPUTS)]
    if left:
        outcome.extra.append(f"leftovers: {[Path(p).name for p in left[:3]]}")
        return "leftovers"
    if outcome.returncode != 0:
        return None
    formulas = _formula_cells(out)
    if formulas:
        outcome.extra.append(f"formula: {formulas[:2]}")
        return "wrong_result"
    for target in declared:
        if not target.is_file() or target.stat().st_size == 0:
            outcome.extra.append(f"missing output {target.name}")
            return "wrong_result"
    features = out / "f" / "h5_files" / "he.h5"
    if probe.expect == "ref_or_error" and not _same_as_reference(features, ctx["ref_features"]):
        outcome.extra.append("features differ from the slide's own")
        return "wrong_result"
    return None


@dataclass
class Job:
    """One probe being run: its sandbox, the state before it and the running verb."""

    index: int
    probe: Probe
    root: Path
    out: Path
    argv: list[str]
    before: dict = field(default_factory=dict)
    out_before: dict = field(default_factory=dict)
    running: Running | None = None
    outcome: Outcome | None = None


def prepare(index: int, probe: Probe, ctx: dict) -> Job:
    """Make the probe's sandbox (cwd ``a/b/work``, output folder ``work/out``) and its argv."""
    root = Path(ctx["sandboxes"]) / f"{index:04d}"
    out = root / "a" / "b" / "work" / "out"
    out.mkdir(parents=True)
    for name in filter(None, probe.prep.split(",")):
        PREPS[name](out, ctx)
    argv = probe.verb.split() + probe.args.format(**{**ctx, "out": str(out)}).split()
    job = Job(index, probe, root, out, argv)
    job.out_before = snapshot(out)
    job.before = {**snapshot(root, skip=out), **snapshot(Path(ctx["inputs"]))}
    return job


def finish(job: Job, ctx: dict) -> dict:
    """Classify a finished probe, clean its sandbox and return its record."""
    probe, outcome = job.probe, job.outcome
    expect = probe.expect
    if expect == "ref_or_error":
        expect = "error" if outcome.returncode else "ok"
    try:
        kind = classify(outcome, expect, outcome.timed_out, probe.option)
        kind = kind or post_checks(job, outcome, ctx)
    finally:
        if "full_disk" in probe.prep or "read_only" in probe.prep:
            subprocess.run(["umount", "-l", str(job.out / "disk")], capture_output=True)
        shutil.rmtree(job.root, ignore_errors=True)
    if any(hint in outcome.stdout + outcome.stderr for hint in UNSAFE_HINTS):
        outcome.extra.append("repeats torch's advice to load the file unsafely")
    elif kind == "multi_line_error":
        outcome.extra.append(f"first line: {error_lines(outcome.stderr)[0][:160]}")
    elif kind == "wrong_result" and expect == "error" and outcome.returncode == 2:
        outcome.extra.append(f"the error does not name {probe.option}")
    elif kind in ("wrong_result", "wrong_exit_code") and not outcome.extra:
        outcome.extra.append(f"{expect} was due")
    lines = [line for line in (outcome.stderr or "").splitlines() if line.strip()]
    return {
        "verb": probe.verb,
        "probe": probe.name,
        "args": " ".join(job.argv[len(probe.verb.split()) :])[:160],
        "kind": kind,
        "exit": outcome.returncode,
        "in_process": outcome.in_process,
        "last_stderr": (lines[-1] if lines else "")[:240],
        "extra": outcome.extra,
    }


def run_all(probes: list[Probe], ctx: dict, env: dict, opts, parser) -> list[dict]:
    """Run the probes, ``opts.jobs`` at a time, from this one thread (safe to fork)."""
    pending, active, records = list(enumerate(probes)), [], []
    logs = Path(ctx["logs"])
    while pending or active:
        while pending and len(active) < max(1, opts.jobs):
            index, probe = pending.pop(0)
            job = prepare(index, probe, ctx)
            job.outcome = parse_rejects(parser, job.argv)
            if job.outcome is None:
                job.running = Running.start(
                    job.argv,
                    _env(env, probe),
                    job.out.parent,
                    logs / f"{index:04d}",
                    opts.timeout,
                    opts.fork,
                )
                active.append(job)
            else:
                records.append(finish(job, ctx))
        for job in list(active):
            job.outcome = job.running.poll()
            if job.outcome is not None:
                active.remove(job)
                records.append(finish(job, ctx))
                if opts.verbose:
                    print(json.dumps(records[-1]), file=sys.stderr, flush=True)
        time.sleep(0.05)
    return records


def run_pair(ctx: dict, env: dict, opts) -> dict:
    """Two extract runs into one folder at once: both clean, the result the slide's own."""
    root = Path(ctx["sandboxes"]) / "pair"
    out = root / "work" / "out"
    out.mkdir(parents=True)
    argv = ["extract", ctx["he"], "-o", str(out / "f"), "--random-weights", "0", "--device", "cpu"]
    logs = Path(ctx["logs"])
    started = [
        Running.start(argv, env, out.parent, logs / f"pair{i}", opts.timeout, opts.fork)
        for i in range(2)
    ]
    runs = [None, None]
    while None in runs:
        runs = [run or started[i].poll() for i, run in enumerate(runs)]
        time.sleep(0.05)
    kind = next((k for k in (classify(run, "clean", run.timed_out) for run in runs) if k), None)
    if kind is None and all(run.returncode for run in runs):
        kind = "wrong_exit_code"
    features = out / "f" / "h5_files" / "he.h5"
    if kind is None and not _same_as_reference(features, ctx["ref_features"]):
        kind = "wrong_result"
    shutil.rmtree(root, ignore_errors=True)
    tails = [(run.stderr.strip().splitlines() or [""])[-1][:200] for run in runs]
    return {
        "verb": "extract",
        "probe": "two runs, one folder",
        "args": " ".join(argv[1:]),
        "kind": kind,
        "exit": [r.returncode for r in runs],
        "in_process": False,
        "last_stderr": " | ".join(tails),
        "extra": [],
    }


def select(probes: list[Probe], quick: bool, only: str | None) -> list[Probe]:
    """The probes of ``--quick`` and ``--only VERB,...`` (verb groups such as ``study`` too)."""
    if quick:
        probes = [p for p in probes if is_quick(p)]
    if only:
        wanted = set(only.split(","))
        probes = [p for p in probes if {p.verb, p.verb.split()[0]} & wanted]
    return probes


def summarise(records: list[dict], source: str) -> dict:
    """The JSON report: what was probed, counts by kind and the failing probes."""
    failed = [r for r in records if r["kind"]]
    by_kind = Counter(r["kind"] for r in failed)
    return {
        "source": source,
        "tried": len(records),
        "passed": len(records) - len(failed),
        "failed": len(failed),
        "by_kind": {kind: by_kind.get(kind, 0) for kind in KINDS},
        "in_process": sum(r["in_process"] for r in records),
        "failures": [
            {k: r[k] for k in ("verb", "probe", "args", "kind", "exit", "last_stderr", "extra")}
            for r in failed
        ],
    }


def _warm_up() -> None:
    """Import what every verb imports once, so forked probes start in milliseconds."""
    import h5py  # noqa: F401
    import torch  # noqa: F401
    import torchvision  # noqa: F401


def _head() -> str:
    return subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()


#: Dropped from ``sys.meta_path`` in the snapshot: the editable install's finder would
#: resolve a module missing from HEAD to the working tree's copy.
NO_EDITABLE = """import sys
sys.meta_path[:] = [f for f in sys.meta_path if "__editable__" not in getattr(f, "__module__", "")]
"""


def snapshot_head(folder: Path) -> Path:
    """Export git HEAD (package and resources) into ``folder``, sealed off the working tree."""
    folder.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", "HEAD", "her2viewer", "resources"],
        capture_output=True,
        check=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    (folder / "sitecustomize.py").write_text(NO_EDITABLE)
    exec(NO_EDITABLE)  # this process imports the snapshot too (the parser, --fork)
    return folder


def main(argv: list[str] | None = None) -> int:
    """Build the inputs, run the probes and print the JSON report."""
    cli = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_argument("--quick", action="store_true", help="a ~20-probe subset")
    cli.add_argument("--only", help="only these verbs or verb groups, comma-separated")
    cli.add_argument("--timeout", type=float, default=60.0, help="seconds per probe (60)")
    cli.add_argument("--jobs", type=int, default=1, help="probes run at once (1)")
    cli.add_argument(
        "--fork",
        action="store_true",
        help="fork each probe from this pre-imported process instead of a fresh "
        "interpreter (much faster; same argv, cwd, env and exit codes)",
    )
    cli.add_argument(
        "--worktree",
        action="store_true",
        help="probe the working tree as it changes (default: a snapshot of git HEAD, so edits "
        "made during the run cannot mix into it)",
    )
    cli.add_argument("--keep", action="store_true", help="keep the work folder")
    cli.add_argument("--verbose", action="store_true", help="print each record as it ends")
    opts = cli.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="h2probe-"))
    source = REPO if opts.worktree else snapshot_head(root / "src")
    sys.path.insert(0, str(source))
    from her2viewer.cli import build_parser

    parser = build_parser()
    probes = select(all_probes(parser), opts.quick, opts.only)
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", HER2VIEWER_CACHE=str(root / "cache"))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(source), env.get("PYTHONPATH")]))
    os.environ["HER2VIEWER_CACHE"] = env["HER2VIEWER_CACHE"]
    try:
        ctx = build_inputs(root, env, opts.quick)
        ctx.update(inputs=str(root / "inputs"), sandboxes=str(root / "sandboxes"))
        ctx["logs"] = str(root / "logs")
        Path(ctx["logs"]).mkdir()
        if opts.fork:
            _warm_up()
        records = run_all(probes, ctx, env, opts, parser)
        if not opts.quick and (opts.only is None or "extract" in opts.only.split(",")):
            records.append(run_pair(ctx, env, opts))
    finally:
        if not opts.keep:
            shutil.rmtree(root, ignore_errors=True)
    import her2viewer

    probed = Path(her2viewer.__file__).parent.parent
    label = "working tree" if opts.worktree else f"git HEAD {_head()[:12]}"
    print(json.dumps(summarise(records, f"{label} at {probed}"), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
