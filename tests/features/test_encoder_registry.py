"""The encoder registry: every foundation model builds and runs, local weights load, the
bundle picks its encoder, and features of another encoder are refused."""

from __future__ import annotations

import csv
import dataclasses
import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from her2viewer.cli.main import main
from her2viewer.errors import ModelError
from her2viewer.features.encoders import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    build_encoder,
    check_same_encoder,
    encoder_for_bundle,
    file_sha256,
)
from her2viewer.features.registry import SPECS, build_network, spec_for, vit_encoder

HOPTIMUS = ((0.707223, 0.578729, 0.703617), (0.211883, 0.230117, 0.177517))
VITS = [name for name, spec in SPECS.items() if spec.constructor]
#: What the model cards state: (dim, input side, mean, std, millions of parameters).
CARDS = {
    "uni": (1024, 224, IMAGENET_MEAN, IMAGENET_STD, 303),
    "uni2_h": (1536, 224, IMAGENET_MEAN, IMAGENET_STD, 681),
    "conch_v1_5": (768, 448, IMAGENET_MEAN, IMAGENET_STD, 306),
    "virchow2": (2560, 224, IMAGENET_MEAN, IMAGENET_STD, 631),
    "prov_gigapath": (1536, 224, IMAGENET_MEAN, IMAGENET_STD, 1135),
    "h_optimus_0": (1536, 224, *HOPTIMUS, 1135),
    "h_optimus_1": (1536, 224, *HOPTIMUS, 1135),
    "phikon_v2": (1024, 224, IMAGENET_MEAN, IMAGENET_STD, 303),
    "hibou_l": (1024, 224, (0.7068, 0.5755, 0.722), (0.195, 0.2316, 0.1816), 304),
    "kaiko_vitb8": (768, 224, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), 86),
    "kaiko_vitl14": (1024, 224, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), 304),
    "lunit_vits8": (384, 224, (0.70322989, 0.53606487, 0.66096631),
                    (0.21716536, 0.26081574, 0.20723464), 22),
}  # fmt: skip


def run_encoder(encoder, tiles: np.ndarray) -> np.ndarray:
    """Features of uint8 (B, S, S, 3) tiles, prepared as the engine does on the CPU."""
    batch = torch.from_numpy(np.stack([encoder.prepare_tile(t) for t in tiles]))
    with torch.inference_mode():
        return encoder.module(encoder.normalise(batch)).numpy()


@pytest.fixture(scope="module")
def tiles() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (2, 256, 256, 3), dtype=np.uint8)


def test_registry_covers_the_models_researchers_use():
    assert set(CARDS) <= set(SPECS) and "resnet50_trunc" in SPECS
    assert all(SPECS[name].small == {"depth": 1} for name in VITS)  # flagged CI variants
    assert spec_for("uni_v1") is SPECS["uni"] and spec_for("lunit-vits8").name == "lunit_vits8"


@pytest.mark.parametrize("name", VITS)
def test_every_encoder_builds_small_and_runs_on_cpu(name, tiles):
    dim, side, mean, std, _ = CARDS[name]
    encoder = build_encoder(name, random_seed=0, small=True)
    assert (encoder.dim, encoder.input_size, encoder.mean, encoder.std) == (dim, side, mean, std)
    assert encoder.provenance == {"weights": "random", "seed": 0, "variant": "small"}
    features = run_encoder(encoder, tiles)
    assert features.shape == (2, dim) and np.isfinite(features).all()
    assert json.loads(encoder.identity)["magnification"] == SPECS[name].magnification


@pytest.mark.parametrize("name", VITS)
def test_full_architectures_have_the_cards_size_and_dim(name):
    """The real networks, built on the meta device (no memory): parameters and output size."""
    dim, side, *_, millions = CARDS[name]
    with torch.device("meta"):
        net = build_network(SPECS[name])
        out = net(torch.zeros(1, 3, side, side))
    assert out.shape == (1, dim)
    assert round(sum(p.numel() for p in net.parameters()) / 1e6) == millions


def test_resize_and_crop_follow_the_card():
    """Prov-GigaPath: resize to 256 (bicubic), centre crop 224, on the CPU and on a device."""
    encoder = build_encoder("prov_gigapath", random_seed=0, small=True)
    tile = np.zeros((512, 512, 3), np.uint8)
    tile[:16] = 255  # a band that the crop cuts away (a plain resize to 224 keeps it)
    prepared = encoder.prepare_tile(tile)
    assert prepared.shape == (224, 224, 3) and prepared[:, :, 0].max() == 0
    x = torch.from_numpy(tile).permute(2, 0, 1)[None].float()
    assert encoder.resize_batch(x).shape == (1, 3, 224, 224)


def small_lunit_checkpoint(folder, fmt: str = "safetensors"):
    """A fixed random-weight checkpoint of the small Lunit network (timm keys)."""
    encoder = build_encoder("lunit_vits8", random_seed=7, small=True)
    state = {k: v.contiguous() for k, v in encoder.module.trunk.state_dict().items()}
    folder.mkdir(parents=True, exist_ok=True)
    if fmt == "safetensors":
        save_file(state, folder / "model.safetensors")
        return encoder, folder / "model.safetensors"
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, folder / "w.bin")
    return encoder, folder / "w.bin"


@pytest.fixture()
def small_spec(monkeypatch):
    """The Lunit row with its small variant as the real network (its weights fit in a test)."""
    spec = dataclasses.replace(
        SPECS["lunit_vits8"], kwargs={**SPECS["lunit_vits8"].kwargs, "depth": 1}
    )
    monkeypatch.setitem(SPECS, "lunit_vits8", spec)
    monkeypatch.delenv(spec.env_var, raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", "/nonexistent-hf-cache")
    return spec


@pytest.mark.parametrize("fmt", ["safetensors", "bin"])
def test_checkpoint_round_trips_through_the_loader(tmp_path, tiles, small_spec, fmt):
    reference, path = small_lunit_checkpoint(tmp_path / "w", fmt)
    loaded = vit_encoder(small_spec, weights=path)
    assert loaded.provenance == {"weights": path.name, "sha256": file_sha256(path)}
    np.testing.assert_array_equal(run_encoder(loaded, tiles), run_encoder(reference, tiles))


def test_weights_from_folder_env_var_and_hf_cache(tmp_path, tiles, small_spec, monkeypatch):
    reference, path = small_lunit_checkpoint(tmp_path / "folder")
    expected = run_encoder(reference, tiles)
    assert np.array_equal(
        run_encoder(vit_encoder(small_spec, weights=tmp_path / "folder"), tiles), expected
    )
    monkeypatch.setenv(small_spec.env_var, str(path))
    assert np.array_equal(run_encoder(vit_encoder(small_spec), tiles), expected)
    monkeypatch.delenv(small_spec.env_var)
    repo = tmp_path / "hub" / ("models--" + small_spec.hf_repo.replace("/", "--"))
    snapshot = repo / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    shutil.copy(path, snapshot / "model.safetensors")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    assert np.array_equal(run_encoder(vit_encoder(small_spec), tiles), expected)
    assert np.array_equal(run_encoder(vit_encoder(small_spec, weights=repo), tiles), expected)


def test_resnet50_trunc_weights_from_its_variable(tmp_path, monkeypatch):
    import torchvision

    path = tmp_path / "r50.pth"
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), path)
    monkeypatch.setenv(SPECS["resnet50_trunc"].env_var, str(path))
    assert build_encoder("resnet50_trunc").provenance["sha256"] == file_sha256(path)


@pytest.mark.parametrize("name", ["phikon_v2", "hibou_l"])
def test_transformers_dinov2_checkpoints_load_into_timm(name, tmp_path):
    """Phikon-v2's and Hibou's format (transformers Dinov2, with registers for Hibou) is
    renamed to timm's: the same CLS features as transformers' own model."""
    transformers = pytest.importorskip("transformers")
    registers = name == "hibou_l"
    kind = "Dinov2WithRegisters" if registers else "Dinov2"
    config = getattr(transformers, f"{kind}Config")(
        hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=256,
        image_size=224, patch_size=SPECS[name].kwargs.get("patch_size", 14 if registers else 16),
        **({"num_register_tokens": 4, "use_swiglu_ffn": True} if registers else {}),
    )  # fmt: skip
    torch.manual_seed(0)
    reference = getattr(transformers, f"{kind}Model")(config).eval()
    for param in reference.parameters():
        param.data.normal_(0, 0.2)  # layer scales and biases away from their initial values
    state = {k: v.contiguous() for k, v in reference.state_dict().items()}
    save_file(state, tmp_path / "model.safetensors")
    small = {"depth": 2, "embed_dim": 64, "num_heads": 4}
    small |= {"mlp_ratio": 2 * 176 / 64} if registers else {}  # SwiGLU's packed width at 64
    spec = dataclasses.replace(SPECS[name], kwargs={**SPECS[name].kwargs, **small})
    encoder = vit_encoder(spec, weights=tmp_path)
    x = torch.randn(2, 3, 224, 224)
    with torch.inference_mode():
        expected = reference(pixel_values=x).last_hidden_state[:, 0]
        torch.testing.assert_close(encoder.module(x), expected, rtol=1e-5, atol=1e-5)


def test_missing_weights_say_where_and_under_which_licence(small_spec):
    with pytest.raises(ModelError) as err:
        build_encoder("uni")
    message = str(err.value)
    assert "HER2VIEWER_WEIGHTS_UNI" in message and "CC-BY-NC-ND-4.0" in message
    assert "huggingface.co/MahmoodLab/UNI" in message and message.count(". ") == 0


def test_wrong_shapes_and_checksums_are_refused(tmp_path, small_spec):
    _, path = small_lunit_checkpoint(tmp_path / "w")
    with pytest.raises(ModelError, match="does not fit uni .*mis-shaped"):
        vit_encoder(SPECS["uni"], weights=path)
    with pytest.raises(ModelError, match="132 missing"):
        build_encoder("lunit_vits8", weights=path)  # the real depth needs 12 blocks
    with pytest.raises(ModelError, match="not the published lunit_vits8 weights"):
        vit_encoder(dataclasses.replace(small_spec, sha256="0" * 64), weights=path)
    with pytest.raises(ModelError, match="only with --random-weights"):
        build_encoder("uni", small=True)


def test_download_goes_through_huggingface_hub_only_when_asked(
    tmp_path, tiles, small_spec, monkeypatch
):
    """A local folder plays the hub: hf_hub_download copies from it into the cache."""
    huggingface_hub = pytest.importorskip("huggingface_hub")
    reference, path = small_lunit_checkpoint(tmp_path / "fake_hub" / small_spec.hf_repo)
    calls = []

    def fake_download(repo_id, filename):
        calls.append((repo_id, filename))
        source = tmp_path / "fake_hub" / repo_id / filename
        if not source.is_file():
            raise FileNotFoundError(filename)
        target = tmp_path / "cache" / repo_id / filename
        target.parent.mkdir(parents=True, exist_ok=True)
        return str(shutil.copy(source, target))

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    with pytest.raises(ModelError, match="No weights for lunit_vits8"):
        vit_encoder(small_spec)
    assert calls == []
    loaded = vit_encoder(small_spec, download=True)
    assert calls == [(small_spec.hf_repo, "model.safetensors")]
    np.testing.assert_array_equal(run_encoder(loaded, tiles), run_encoder(reference, tiles))
    with pytest.raises(ModelError, match="Could not download uni weights"):
        vit_encoder(SPECS["uni"], download=True)


def test_encoders_list_json(capsys):
    assert main(["encoders", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["name"]: r["dim"] for r in rows} == {n: s.dim for n, s in SPECS.items()}
    assert all(r["card"] and r["licence"] for r in rows)
    assert main(["encoders", "list"]) == 0
    assert "virchow2" in capsys.readouterr().out


def test_features_of_another_encoder_are_refused():
    lunit = build_encoder("lunit_vits8", random_seed=0, small=True).describe()
    other = {
        "encoder_description": json.dumps({**lunit, "provenance": {"weights": "random", "seed": 1}})
    }
    with pytest.raises(ModelError, match=r"^f.h5 holds features from encoder lunit_vits8 \(random"):
        check_same_encoder(lunit, other, "f.h5")
    trident = {"encoder_description": json.dumps({"name": "uni", "dim": 1024})}
    check_same_encoder(
        {"name": "uni", "provenance": {"weights": "x", "sha256": "ab"}}, trident, "t"
    )
    with pytest.raises(ModelError, match="trained on lunit_vits8"):
        check_same_encoder(lunit, trident, "t.h5")


def extract_cohort(labels, out, capsys):
    """Extract the synthetic cohort with the small random Lunit ViT-S/8 (CLI, in process)."""
    args = ["extract", str(labels), "-o", str(out), "--encoder", "lunit_vits8", "--small"]
    args += ["--random-weights", "5", "--mag", "5", "--patch-size", "64", "--quiet"]
    args += ["--device", "cpu", "--workers", "2"]
    assert main(args) == 0
    capsys.readouterr()


def test_clam_model_on_foundation_features_runs_with_its_bundles_encoder(
    synthetic_cohort, tmp_path, capsys
):
    from her2viewer.analysis.clam import ClamOptions, analyse_clam
    from her2viewer.models.clam import load_clam, save_clam_bundle
    from her2viewer.slide import open_slide
    from her2viewer.training.clam_train import ClamTrainConfig, train_clam
    from her2viewer.training.datasets import load_cohort

    extract_cohort(synthetic_cohort, tmp_path / "feats", capsys)
    cohort = load_cohort(tmp_path / "feats", synthetic_cohort)
    assert cohort.encoder["name"] == "lunit_vits8" and cohort.encoder["dim"] == 384
    recorded = {k: cohort.encoder[k] for k in ("mean", "magnification", "pooling", "provenance")}
    assert recorded == {
        "mean": list(SPECS["lunit_vits8"].mean),
        "magnification": "20x and 40x",
        "pooling": "cls",
        "provenance": {"weights": "random", "seed": 5, "variant": "small"},
    }
    config = ClamTrainConfig(max_epochs=2, min_epochs=1, k_sample=2)
    result = train_clam(cohort.bags[:3], cohort.bags[3:], config, len(cohort.class_names))
    bundle = tmp_path / "bundle"
    meta = {"class_names": cohort.class_names, "encoder": cohort.encoder, "magnification": 5.0}
    save_clam_bundle(bundle, result.model, meta | {"patch_size": 64})
    _, loaded = load_clam(bundle)
    assert encoder_for_bundle(loaded).provenance["variant"] == "small"
    options = ClamOptions(magnification=5.0, patch_size=64, device="cpu", workers=2)
    with open_slide(synthetic_cohort.parent / "case000" / "he.svs") as slide:
        analysed = analyse_clam(slide, bundle, options, cache=tmp_path / "cache")
    assert analysed.summary()["prediction"] in cohort.class_names
    features = tmp_path / "feats" / "h5_files" / "case000.h5"
    assert main(["clam", "infer", "--model", str(bundle), "--features", str(features)]) == 0


def test_clam_infer_refuses_features_of_another_encoder(synthetic_cohort, tmp_path, capsys):
    from her2viewer.models.clam import CLAM, ClamConfig, save_clam_bundle

    with open(synthetic_cohort) as handle:
        first = next(csv.DictReader(handle))
    labels = tmp_path / "one.csv"
    labels.write_text(f"case_id,he_path\ncase000,{synthetic_cohort.parent / first['he_path']}\n")
    extract_cohort(labels, tmp_path / "feats", capsys)
    other = build_encoder("lunit_vits8", random_seed=6, small=True).describe()
    bundle = tmp_path / "bundle"
    model = CLAM(ClamConfig(embed_dim=384))
    save_clam_bundle(bundle, model, {"class_names": ["negative", "positive"], "encoder": other})
    features = tmp_path / "feats" / "h5_files" / "case000.h5"
    assert main(["clam", "infer", "--model", str(bundle), "--features", str(features)]) == 2
    err = capsys.readouterr().err.strip()
    assert "holds features from encoder lunit_vits8" in err and "\n" not in err
