"""Prov-GigaPath's slide encoder: the official checkpoint's names and shapes, MAE's sin-cos
table, one LongNet layer worked out by hand, row-order independence, strict loading, and
`embed` on features made by `extract --encoder prov_gigapath`."""

from __future__ import annotations

import json
import shutil

import h5py
import numpy as np
import pytest
import torch
from torch.nn import functional as F

from her2viewer.cli.main import main
from her2viewer.errors import ModelError
from her2viewer.features import gigapath_slide as gp
from her2viewer.features.slide_encoders import load_slide_encoder, slide_spec_for
from her2viewer.features.store import read_features
from her2viewer.features.trident import trident_path, write_trident
from tests.reliability.conftest import one_line_error

#: One torchscale LongNet encoder layer (EncoderLayer with subln, DilatedAttention, FFN).
LAYER = {
    **{f"self_attn.{p}_proj.weight": (768, 768) for p in ("q", "k", "v", "out")},
    **{f"self_attn.{p}_proj.bias": (768,) for p in ("q", "k", "v", "out")},
    "self_attn.inner_attn_ln.weight": (768,),
    "self_attn.inner_attn_ln.bias": (768,),
    "self_attn_layer_norm.weight": (768,),
    "self_attn_layer_norm.bias": (768,),
    "ffn.fc1.weight": (3072, 768),
    "ffn.fc1.bias": (3072,),
    "ffn.fc2.weight": (768, 3072),
    "ffn.fc2.bias": (768,),
    "ffn.ffn_layernorm.weight": (3072,),
    "ffn.ffn_layernorm.bias": (3072,),
    "final_layer_norm.weight": (768,),
    "final_layer_norm.bias": (768,),
}  # fmt: skip
SMALL = ["--encoder", "gigapath_slide", "--small", "--random-seed", "0", "--device", "cpu"]


def official_keys(depth: int = 12) -> dict:
    """``gigapath_slide_enc12l768d``'s state dict (slide_encoder.pth's ``model``)."""
    keys = {
        "cls_token": (1, 1, 768),
        "patch_embed.proj.weight": (768, 1536),
        "patch_embed.proj.bias": (768,),
        "encoder.layer_norm.weight": (768,),
        "encoder.layer_norm.bias": (768,),
        "norm.weight": (768,),
        "norm.bias": (768,),
    }
    for i in range(depth):
        keys |= {f"encoder.layers.{i}.{k}": shape for k, shape in LAYER.items()}
    return keys


def tiles(n: int = 20, seed: int = 0, size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """n Prov-GigaPath-sized features on distinct cells of a ``size`` px level-0 grid."""
    gen = torch.Generator().manual_seed(seed)
    cells = torch.randperm(64, generator=gen)[:n]
    coords = torch.stack([cells % 8, cells // 8], 1) * size + 3 * size
    return torch.randn(n, 1536, generator=gen), coords.long()


def test_full_model_has_the_official_names_and_shapes():
    with torch.device("meta"):
        model = gp.build(small=False)
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == official_keys()
    layer = model.encoder.layers[0].self_attn
    assert (layer.heads, layer.segments, layer.ratios) == (
        16,
        (1024, 5792, 32768, 185363, 1048576),
        (1, 2, 4, 8, 16),
    )
    spec = slide_spec_for("gigapath_slide")
    assert (spec.tile_encoder, spec.tile_dim, spec.dim, spec.patch_size) == (
        "prov_gigapath",
        1536,
        768,
        256,
    )
    assert spec.weights_files == ("slide_encoder.pth",) and spec.hf_repo.startswith("prov-")


def test_position_embedding_is_maes_table_at_x_cell_times_grid_plus_y_cell():
    """get_2d_sincos_pos_embed(dim, grid) (MAE, gigapath/pos_embed.py), row x * grid + y."""
    dim, grid = 16, 7
    omega = 1.0 / 10000 ** (np.arange(dim // 4) / (dim / 4))

    def one_axis(pos):
        out = np.outer(pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    w, h = np.meshgrid(np.arange(grid, dtype=np.float32), np.arange(grid, dtype=np.float32))
    table = np.concatenate([one_axis(w), one_axis(h)], axis=1)
    cells = torch.tensor([[0, 0], [3, 5], [6, 1], [2, 6]])
    expected = table[cells[:, 0] * grid + cells[:, 1]]
    np.testing.assert_allclose(gp.sincos_position(cells, dim).numpy(), expected, atol=1e-6)


def test_one_layer_with_dense_attention_matches_the_layer_written_out():
    torch.manual_seed(0)
    model = gp.GigaPathSlideEncoder(1, (64,), (1,)).eval()  # one segment: plain attention
    for p in model.parameters():  # LayerNorms away from 1 and 0, so each one counts
        p.data.add_(torch.randn_like(p) * 0.05)
    features, coords = tiles(5)
    layer = model.encoder.layers[0]
    with torch.inference_mode():
        order = torch.argsort(coords[:, 1] * 10_000 + coords[:, 0])
        cells = coords[order] // 256
        x = model.patch_embed["proj"](features[order]) + gp.sincos_position(cells, 768)
        x = torch.cat([model.cls_token[0], x])
        h = layer.self_attn_layer_norm(x)
        attn = layer.self_attn
        projections = (attn.q_proj, attn.k_proj, attn.v_proj)
        q, k, v = (p(h).view(6, 16, 48).transpose(0, 1) for p in projections)
        a = F.scaled_dot_product_attention(q, k, v).transpose(0, 1).reshape(6, 768)
        x = x + attn.out_proj(attn.inner_attn_ln(a))
        ffn = layer.ffn
        h = ffn.fc2(ffn.ffn_layernorm(F.gelu(ffn.fc1(layer.final_layer_norm(x)))))
        x = x + h
        expected = model.norm(model.encoder.layer_norm(x))[0]
        torch.testing.assert_close(model(features, coords, 256), expected)
        layers = model(features, coords, 256, all_layers=True)
        torch.testing.assert_close(layers[1], model.norm(x[0]))  # the official all_layer_embed


def test_small_variant_embeds_768_whatever_the_order_of_the_rows():
    model, provenance = load_slide_encoder("gigapath_slide", small=True, random_seed=0)
    assert provenance == {
        "encoder": "gigapath_slide",
        "variant": "small",
        "weights": "random",
        "seed": 0,
    }
    assert model.encoder.layers[0].self_attn.segments == (4, 8, 16)  # 21 tokens: all dilations
    features, coords = tiles(20)
    order = torch.randperm(20, generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        embedding = model(features, coords, 256)
        assert embedding.shape == (768,) and torch.isfinite(embedding).all()
        torch.testing.assert_close(model(features[order], coords[order], 256), embedding)
        # a tile's cell is floor(coords / patch_size_level0): 40x coordinates, 512 px tiles
        torch.testing.assert_close(model(features, 2 * coords + 100, 512), embedding)
        # positions are absolute: the same tiles one cell to the right are another slide
        assert not torch.allclose(model(features, coords + torch.tensor([256, 0]), 256), embedding)
        assert model(features, coords, 256, all_layers=True).shape == (3, 768)


@pytest.mark.parametrize("corner", [(-256, 0), (0, 1000 * 256)])
def test_a_tile_off_the_position_grid_is_one_sentence(corner):
    model = gp.build(small=True)
    features, coords = tiles(4)
    coords[2] = torch.tensor(corner)
    with pytest.raises(ModelError) as info:
        model(features, coords, 256)
    message = str(info.value)
    assert f"level-0 ({corner[0]}, {corner[1]})" in message and "1000 x 1000" in message
    assert "\n" not in message


@pytest.fixture()
def one_layer(monkeypatch):
    """The full-width model with one layer, so a checkpoint file stays small in tests."""
    monkeypatch.setattr(gp, "DEPTH", 1)


def official_checkpoint(path, seed: int = 0) -> dict:
    """A file laid out like prov-gigapath/prov-gigapath's slide_encoder.pth (one layer)."""
    gen = torch.Generator().manual_seed(seed)
    state = {k: torch.randn(shape, generator=gen) for k, shape in official_keys(1).items()}
    torch.save({"model": state}, path)
    return state


def test_an_official_checkpoint_loads_strictly(tmp_path, one_layer):
    state = official_checkpoint(tmp_path / "slide_encoder.pth")
    model, provenance = load_slide_encoder("gigapath_slide", weights=tmp_path)
    assert provenance["weights"] == "slide_encoder.pth" and len(provenance["sha256"]) == 64
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, state[key])
    assert not model.training


@pytest.mark.parametrize(
    "change, fragment",
    [  # torchscale without subln; a ViT-style pos_embed; a 1024-d tile encoder's projection
        (lambda s: s.pop("encoder.layers.0.self_attn.inner_attn_ln.weight"), "1 missing"),
        (lambda s: s.update({"pos_embed": torch.zeros(1, 5, 768)}), "1 unexpected"),
        (lambda s: s.update({"patch_embed.proj.weight": torch.zeros(768, 1024)}), "1 mis-shaped"),
    ],
)
def test_a_checkpoint_that_does_not_fit_is_refused_in_one_sentence(
    tmp_path, one_layer, change, fragment
):
    state = official_checkpoint(tmp_path / "x.pth")
    change(state)
    torch.save({"model": state}, tmp_path / "slide_encoder.pth")
    with pytest.raises(ModelError) as info:
        load_slide_encoder("gigapath_slide", weights=tmp_path / "slide_encoder.pth")
    message = str(info.value)
    assert "slide_encoder.pth does not fit gigapath_slide" in message and fragment in message
    assert "\n" not in message


@pytest.fixture(scope="module")
def gigapath_features(synthetic_case, tmp_path_factory):
    """`extract --encoder prov_gigapath --small --random-weights 0` features of the H&E
    (at 5x, so that the 1536-wide ViT-g block encodes only a few tiles on CPU)."""
    out = tmp_path_factory.mktemp("gigapath")
    argv = ["extract", str(synthetic_case / "he.svs"), "-o", str(out), "--encoder"]
    argv += ["prov_gigapath", "--small", "--random-weights", "0", "--device", "cpu"]
    assert main([*argv, "--mag", "5", "--quiet"]) == 0
    return out / "h5_files" / "he.h5"


def test_embed_on_extracted_prov_gigapath_features(gigapath_features, tmp_path, capsys):
    out, theirs = tmp_path / "ours.h5", tmp_path / "theirs.h5"
    capsys.readouterr()
    assert main(["embed", str(gigapath_features), *SMALL, "-o", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["provenance"]["variant"] == "small" and summary["dim"] == 768
    tiles_in_file = len(read_features(gigapath_features))
    with h5py.File(out) as h5:
        assert h5["he"].shape == (768,) and np.isfinite(h5["he"][:]).all()
        assert h5["he"].attrs["tile_encoder"] == "prov_gigapath"
        assert h5["he"].attrs["tiles"] == tiles_in_file > 0
    # the same features in TRIDENT's layout (features_gigapath/) give the same embedding
    job = tmp_path / "job"
    write_trident(trident_path(job, "prov_gigapath", "he"), read_features(gigapath_features), "he")
    assert main(["embed", str(job), *SMALL, "-o", str(theirs)]) == 0
    with h5py.File(out) as a, h5py.File(theirs) as b:
        np.testing.assert_allclose(a["he"][:], b["he"][:], rtol=1e-5, atol=1e-6)


def test_features_of_another_1536_d_encoder_are_refused(gigapath_features, tmp_path, capsys):
    path = tmp_path / "he.h5"
    shutil.copy(gigapath_features, path)
    with h5py.File(path, "a") as h5:  # H-optimus-0 features have GigaPath's size
        description = json.loads(h5.attrs["encoder_description"])
        h5.attrs["encoder_description"] = json.dumps(description | {"name": "h_optimus_0"})
        h5.attrs["encoder"] = "h_optimus_0"
    out = tmp_path / "e.h5"
    assert main(["embed", str(path), *SMALL, "-o", str(out)]) == 2
    one_line_error(capsys, "he.h5 holds features from encoder h_optimus_0", "prov_gigapath")
    assert not out.exists()
