"""Weights checksums: a file from a Hugging Face cache must have the SHA-256 its blob is named
by (the hub's published digest), a user can pin one, and every file is hashed once per run."""

from __future__ import annotations

import hashlib
import os
import shutil

import pytest
from safetensors.torch import save_file

from her2viewer.cli.main import main
from her2viewer.errors import ModelError
from her2viewer.features import encoders
from her2viewer.features.encoders import build_encoder, file_sha256
from her2viewer.features.registry import SPECS, vit_encoder

LUNIT = SPECS["lunit_vits8"]


@pytest.fixture()
def lunit(monkeypatch):
    """The real Lunit row, no weights variables, no HF cache."""
    for name in (LUNIT.env_var, LUNIT.env_var + "_SHA256"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", "/nonexistent-hf-cache")
    return LUNIT


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> bytes:
    """The bytes of a full-depth Lunit ViT-S/8 checkpoint with seeded random weights."""
    encoder = build_encoder("lunit_vits8", random_seed=3)
    state = {k: v.contiguous() for k, v in encoder.module.trunk.state_dict().items()}
    path = tmp_path_factory.mktemp("lunit") / "model.safetensors"
    save_file(state, path)
    return path.read_bytes()


def hf_cache(root, repo: str, content: bytes, blob_name: str | None = None):
    """An HF cache holding ``content`` as model.safetensors (a link to blobs/<sha256>)."""
    folder = root / ("models--" + repo.replace("/", "--"))
    blob = folder / "blobs" / (blob_name or hashlib.sha256(content).hexdigest())
    blob.parent.mkdir(parents=True)
    blob.write_bytes(content)
    snapshot = folder / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    (snapshot / "model.safetensors").symlink_to(os.path.relpath(blob, snapshot))
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text("0123abcd")
    return folder


def test_hf_cache_file_with_its_blobs_digest_loads(tmp_path, lunit, checkpoint, monkeypatch):
    hf_cache(tmp_path / "hub", lunit.hf_repo, checkpoint)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    encoder = vit_encoder(lunit)
    assert encoder.provenance["sha256"] == hashlib.sha256(checkpoint).hexdigest()


def test_truncated_hf_cache_file_is_refused_in_one_sentence(
    tmp_path, lunit, checkpoint, synthetic_cohort, capsys
):
    """An interrupted copy keeps the blob's name (the full file's digest) but not its bytes."""
    full = hashlib.sha256(checkpoint).hexdigest()
    folder = hf_cache(tmp_path / "hub", lunit.hf_repo, checkpoint[: len(checkpoint) // 2], full)
    with pytest.raises(ModelError) as err:
        vit_encoder(lunit, weights=folder)
    message = str(err.value)
    assert "is corrupt or truncated" in message and full in message
    assert message.endswith("delete it and download again.") and ". " not in message
    args = ["extract", str(synthetic_cohort), "-o", str(tmp_path / "out"), "--quiet"]
    assert main([*args, "--encoder", "lunit_vits8", "--weights", str(folder)]) == 2
    printed = capsys.readouterr().err.strip()
    assert "is corrupt or truncated" in printed and "\n" not in printed


def test_download_into_the_cache_is_checked(tmp_path, lunit, checkpoint, monkeypatch):
    """--download: hf_hub_download's answer (a snapshot link) is checked like the cache."""
    huggingface_hub = pytest.importorskip("huggingface_hub")
    bad = hf_cache(tmp_path / "hub", lunit.hf_repo, b"not the weights", "ab" * 32)

    def fake_download(repo_id, filename):
        return str(bad / "snapshots" / "0123abcd" / filename)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    with pytest.raises(ModelError, match="is corrupt or truncated: its SHA-256 .* hub's abab"):
        vit_encoder(lunit, download=True)


def test_user_pinned_digest(tmp_path, lunit, checkpoint, monkeypatch):
    path = tmp_path / "model.safetensors"
    path.write_bytes(checkpoint)
    variable = "HER2VIEWER_WEIGHTS_LUNIT_VITS8_SHA256"
    monkeypatch.setenv(variable, "0" * 64)
    with pytest.raises(ModelError, match=f"not the published lunit_vits8 weights.*{variable}"):
        vit_encoder(lunit, weights=path)
    monkeypatch.setenv(variable, hashlib.sha256(checkpoint).hexdigest().upper())
    assert vit_encoder(lunit, weights=path).provenance["sha256"] == file_sha256(path)


def test_a_file_is_hashed_once_per_run_unless_it_changes(tmp_path, monkeypatch):
    path = tmp_path / "w.bin"
    path.write_bytes(b"a" * 1000)
    first = file_sha256(path)
    stat = path.stat()
    reads = []

    def counted_open(*args):
        reads.append(args)
        return open(*args)  # noqa: SIM115 - file_sha256 closes it

    monkeypatch.setattr(encoders, "open", counted_open, raising=False)
    assert file_sha256(path) == first and reads == []  # from memory
    path.write_bytes(b"b" * 1000)  # same size; the mtime tells the change
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert file_sha256(path) == hashlib.sha256(b"b" * 1000).hexdigest() and len(reads) == 1
    shutil.copy(path, tmp_path / "copy.bin")
    assert file_sha256(tmp_path / "copy.bin") == file_sha256(path)
