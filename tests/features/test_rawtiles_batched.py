"""The raw-tile path's batched cut and the CUDA-only decisions, checked on the CPU (issue 22).

The cut (:func:`cut_patches`) is compared with a paste per patch from a whole level
image, numpy and torch alike; its torch operations are counted to show that a batch
costs the same few kernels whatever its size. The decisions only a CUDA device reaches
(the decoder probe, a batch nvJPEG refuses, the autocast dtype, the float16 overflow)
run here with a stand-in decoder or on CPU autocast; only the device calls themselves
stay untested.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from her2viewer.features import rawtiles
from her2viewer.features.encoders import Encoder
from her2viewer.features.engine import DeviceRunner, _joined, autocast_dtype
from her2viewer.features.rawtiles import (
    RawLevel,
    RawPatchReader,
    cut_patches,
    decode_tiles,
    decoder_difference,
    decodes_alike,
    patch_reader,
    plan_cut,
    raw_level,
)
from her2viewer.slide import open_slide
from her2viewer.tissue import PatchGrid

CPU, CUDA = torch.device("cpu"), torch.device("cuda")
pytestmark = pytest.mark.filterwarnings("ignore:The image decoding:DeprecationWarning")
real_decode = rawtiles.decode_jpeg


def _level(width=650, height=530, tile=(96, 128), empty=(3, 7)) -> tuple[RawLevel, np.ndarray]:
    """A level of random pixels in tiles (two left empty), and its image as OpenSlide
    gives it (white where the file has no tile)."""
    rng = np.random.default_rng(0)
    th, tw = tile
    across, down = -(-width // tw), -(-height // th)
    counts = np.ones(across * down, np.int64)
    counts[list(empty)] = 0
    image = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    for i in empty:
        ty, tx = divmod(i, across)
        image[ty * th : (ty + 1) * th, tx * tw : (tx + 1) * tw] = 255
    level = RawLevel("unused", width, height, tw, th, counts * 0, counts, b"")
    return level, image


def _stack(level: RawLevel, image: np.ndarray, tiles: np.ndarray) -> np.ndarray:
    """The decoded tiles as a decoder gives them: edge tiles padded with noise, then white."""
    th, tw = level.tile_height, level.tile_width
    padded = np.random.default_rng(1).integers(
        0, 255, (-(-image.shape[0] // th) * th, level.tiles_across * tw, 3), np.uint8
    )
    padded[: image.shape[0], : image.shape[1]] = image
    out = [
        padded[(i // level.tiles_across) * th :][:th, (i % level.tiles_across) * tw :][:, :tw]
        for i in tiles
    ]
    return np.stack([*out, np.full((th, tw, 3), 255, np.uint8)])


def _pasted(image: np.ndarray, corners: np.ndarray, side: int) -> np.ndarray:
    """Patches cut one by one from the level image, white outside it."""
    margin = side + 200  # corners reach up to 150 px past the level
    canvas = np.pad(image, ((margin, margin), (margin, margin), (0, 0)), constant_values=255)
    return np.stack([canvas[y + margin :][:side, x + margin :][:, :side] for x, y in corners])


@pytest.mark.parametrize("side", [40, 150, 300])
def test_batched_cut_equals_a_paste_per_patch(side):
    level, image = _level()
    rng = np.random.default_rng(side)
    corners = np.stack([rng.integers(-side, 700, 24), rng.integers(-side, 580, 24)], axis=1)
    corners[:3] = [(0, 0), (650 - side, 530 - side), (640, 520)]  # aligned, flush, off the corner
    plan = plan_cut(level, corners, side)
    expected = _pasted(image, corners, side)
    assert np.array_equal(cut_patches(_stack(level, image, plan.tiles), plan, np.asarray), expected)
    on_torch = cut_patches(
        torch.from_numpy(_stack(level, image, plan.tiles)), plan, torch.as_tensor
    )
    assert torch.equal(on_torch, torch.from_numpy(expected))


def test_a_patch_wholly_outside_the_level_or_on_empty_tiles_is_white():
    level, image = _level(empty=(0, 1, 7, 8))
    corners = np.array([[0, 0], [-500, 10], [10, 900]])
    plan = plan_cut(level, corners, 90)
    assert len(plan.tiles) == 0
    patches = cut_patches(_stack(level, image, plan.tiles), plan, np.asarray)
    assert (patches == 255).all()


class _Ops(TorchDispatchMode):
    """Counts the torch operations that launch work (views and torchvision's decoder aside)."""

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if not func.is_view and func.namespace != "image":
            self.count += 1
        return func(*args, **(kwargs or {}))


def test_a_batch_costs_the_same_few_operations_whatever_its_size(synthetic_case):
    """The torch code a CUDA device runs: decode, cut and area resize, per batch not per patch."""
    with open_slide(synthetic_case / "he.svs") as slide:
        info = slide.info.levels[0]
        xs = np.arange(37, info.width - 600, 263)
        corners = np.array([(x, y) for y in xs[:5] for x in xs[:5]], np.int64)
        grid = _grid(slide, corners, 512, 256)
        reader = RawPatchReader(slide, grid, CPU)
        reader._numpy = False
        counts = []
        for rows in (range(2), range(len(grid))):
            with _Ops() as ops:
                reader.read(rows)
            counts.append(ops.count)
    assert counts[0] == counts[1] <= 20


def _grid(slide, corners: np.ndarray, side: int, target: int) -> PatchGrid:
    """Patches of ``side`` px of level 0 at ``corners``, delivered at ``target`` px."""
    info = slide.info.levels[0]
    return PatchGrid(
        coords=corners,
        patch_level=0,
        patch_size=side,
        patch_size_level0=side,
        target_size=target,
        magnification=None,
        mpp=None,
        level_dim=(info.width, info.height),
        downsample=1.0,
        name="t",
    )


def _streams(synthetic_case, n=3) -> tuple[RawLevel, list[torch.Tensor]]:
    with open_slide(synthetic_case / "he.svs") as slide:
        level = raw_level(slide, 0)
    return level, level.streams(list(range(n)))


def test_a_batch_nvjpeg_refuses_is_decoded_on_the_cpu(monkeypatch, synthetic_case):
    def nvjpeg_refuses(streams, mode, device="cpu"):
        if torch.device(device).type == "cuda":
            raise RuntimeError("nvjpegDecodeBatched failed: unsupported JPEG (CMYK)")
        return real_decode(streams, mode=mode)

    _, streams = _streams(synthetic_case)
    monkeypatch.setattr(rawtiles, "decode_jpeg", nvjpeg_refuses)
    images = decode_tiles(streams, CUDA)
    expected = [real_decode(s).permute(1, 2, 0) for s in streams]
    assert all(torch.equal(a, b) for a, b in zip(images, expected, strict=True))


def _edges_off(images: list[torch.Tensor]) -> list[torch.Tensor]:
    """Images with a black first column: far off at a few pixels, as another chroma
    upsampling can be at sharp edges."""
    out = [image.clone() for image in images]
    for image in out:
        image[:, :, 0] = 0
    return out


def _shifted(images: list[torch.Tensor], by: int) -> list[torch.Tensor]:
    return [(image.int() + by).clamp(0, 255).to(torch.uint8) for image in images]


@pytest.mark.parametrize(
    ("device_decoder", "alike"),
    [
        (lambda images: images, True),
        (lambda images: _shifted(images, 2), True),
        (_edges_off, True),
        (lambda images: _shifted(images, 3), False),
        (lambda images: [i[:, :-8] for i in images], False),
        (lambda images: (_ for _ in ()).throw(RuntimeError("nvJPEG: progressive")), False),
    ],
    ids=["same", "mean-2", "a-black-column", "mean-3", "other-shape", "refused"],
)
def test_the_device_probe_compares_with_the_cpus_decoding(
    monkeypatch, synthetic_case, device_decoder, alike
):
    def decoder(streams, mode, device="cpu"):
        images = real_decode(streams, mode=mode)
        return device_decoder(images) if torch.device(device).type == "cuda" else images

    level, _ = _streams(synthetic_case)
    monkeypatch.setattr(rawtiles, "decode_jpeg", decoder)
    assert decodes_alike(level, np.array([0, 1]), CUDA) is alike
    assert decodes_alike(level, np.array([], np.int64), CUDA)


def test_the_decoder_difference_is_reported(monkeypatch, synthetic_case):
    def decoder(streams, mode, device="cpu"):
        images = real_decode(streams, mode=mode)
        return _edges_off(images) if torch.device(device).type == "cuda" else images

    level, _ = _streams(synthetic_case)
    monkeypatch.setattr(rawtiles, "decode_jpeg", decoder)
    difference = decoder_difference(level, np.array([0, 1]), CUDA)
    assert difference["tiles"] == 2 and 0 < difference["mean"] < 1 and difference["max"] > 100


def test_a_gpu_whose_decoder_differs_reads_raw_tiles_on_the_cpu(monkeypatch, synthetic_case):
    monkeypatch.setattr(rawtiles, "decodes_alike", lambda level, tiles, device: False)
    with open_slide(synthetic_case / "he.svs") as slide:
        reader, path = patch_reader(slide, _grid(slide, np.array([[0, 0]]), 64, 64), CUDA, "raw")
    assert reader.device == CPU and path == "raw-cpu"


def _encoder(name: str, module: nn.Module | None = None) -> Encoder:
    return Encoder(name=name, module=module or nn.Identity(), dim=2, input_size=None)


@pytest.mark.parametrize("bf16", [True, False])
def test_the_autocast_dtype_is_tridents_precision_of_the_model(monkeypatch, bf16):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: bf16)
    trained_bf16 = torch.bfloat16 if bf16 else torch.float32
    expected = {
        "uni2_h": trained_bf16,
        "uni": torch.float16,
        "virchow2": torch.float16,
        "resnet50_trunc": torch.float16,
        "phikon_v2": torch.float32,
        "hibou_l": torch.float32,
        "lunit_vits8": torch.float32,
        "torchscript:net.pt": torch.float16,
    }
    for name, dtype in expected.items():
        assert autocast_dtype(_encoder(name), CUDA) == dtype, name
        assert autocast_dtype(_encoder(name), CPU) == torch.float32


def test_a_float16_overflow_is_computed_again_in_float32():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 2))
    batch = torch.full((2, 4, 4, 3), 200, dtype=torch.uint8)
    runner = DeviceRunner(_encoder("t", net), CPU)
    exact = runner(batch)
    runner.dtype = torch.float16  # CPU autocast runs float16 matrix products like CUDA's
    assert np.allclose(runner(batch), exact, rtol=1e-2) and runner.dtype == torch.float16
    with torch.no_grad():
        net[1].weight.fill_(1e4)
    exact = DeviceRunner(_encoder("t", net), CPU)(batch)
    assert np.isfinite(exact).all()
    assert np.array_equal(runner(batch), exact) and runner.dtype == torch.float32


def test_raw_batches_from_the_cpu_are_joined_in_the_batch_buffer():
    buffer = torch.zeros((6, 2, 2, 3), dtype=torch.uint8)
    parts = [
        torch.full((2, 2, 2, 3), 1, dtype=torch.uint8),
        torch.full((4, 2, 2, 3), 2, dtype=torch.uint8),
    ]
    joined = _joined(parts, buffer)
    assert joined.data_ptr() == buffer.data_ptr() and torch.equal(joined, torch.cat(parts))


def test_grids_of_the_real_slide_cut_alike_in_any_batch_split(cmu_svs):
    """Aperio's 240 px tiles against 256 px patches: every batch split gives the same pixels."""
    with open_slide(cmu_svs) as slide:
        info = slide.info.levels[0]
        xs = np.arange(-31, info.width, 256)
        ys = np.arange(-31, info.height, 256)
        corners = np.array([(x, y) for y in ys for x in xs], np.int64)
        grid = _grid(slide, corners, 256, 256)
        reader = RawPatchReader(slide, grid, CPU)
        whole = reader.read(range(len(grid)))
        split = torch.cat(
            [reader.read(range(i, min(i + 5, len(grid)))) for i in range(0, len(grid), 5)]
        )
        one = np.stack([grid.read_patch(slide, i) for i in (0, len(grid) - 1)])
    assert torch.equal(whole, split)
    assert np.abs(whole[[0, -1]].numpy().astype(int) - one).max() <= rawtiles.DECODER_TOLERANCE
