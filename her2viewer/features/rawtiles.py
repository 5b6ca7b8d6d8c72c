"""Patches decoded from a slide's raw JPEG tiles, in batches, on the CPU or a CUDA device.

OpenSlide decodes one tile at a time on the CPU. Most slides store their levels as
240-512 px JPEG tiles in a TIFF (Aperio SVS, generic tiled TIFF), so the compressed
bytes of the tiles a batch of patches covers are read straight from the file
(tifffile's ``dataoffsets``/``databytecounts``), made into complete JPEG streams
(Aperio's shared ``JPEGTables`` spliced in front of each abbreviated tile; an Adobe
marker saying "no colour transform" for tiles stored as RGB, not YCbCr, as OpenSlide
decodes them), decoded together by :func:`torchvision.io.decode_jpeg` (nvJPEG on a
CUDA device) and cut into patches on that device. Areas outside the level, and tiles
the file leaves empty, are white, as OpenSlide gives them.

Any other layout (JPEG 2000 tiles as Aperio's 33003/33005, LZW, stripped levels, a
non-TIFF format, patch corners between level pixels) is read through OpenSlide, and
:func:`patch_reader` says why.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

import cv2
import numpy as np
import tifffile
import torch
from torchvision.io import ImageReadMode, decode_jpeg

from her2viewer.slide import Slide
from her2viewer.tissue import PatchGrid

#: ``--decode`` choices: OpenSlide per tile (today's path), or raw JPEG tiles in batches.
DECODE_CHOICES = ("openslide", "raw")
#: TIFF compression code of JPEG; Aperio's JPEG 2000 (33003, 33005) is not JPEG.
JPEG = 7
#: TIFF photometric codes the raw path decodes.
RGB, YCBCR = 2, 6
#: Largest difference (grey levels) between two libjpeg-turbo builds' decoding of a tile
#: (torchvision's and OpenSlide's), which may round the IDCT and upsampling differently.
DECODER_TOLERANCE = 2
#: Largest mean difference (grey levels) from the CPU's pixels for a CUDA device's decoder
#: to be used: nvJPEG's IDCT and chroma upsampling differ from libjpeg-turbo's by more
#: than :data:`DECODER_TOLERANCE` at some pixels (torchvision's own test of nvJPEG allows
#: a mean of 2), while colours read wrongly (RGB tiles taken for YCbCr) differ by tens.
DEVICE_DECODER_MEAN = 2.0
#: Tiles the device's decoder is compared on before a run (the grid's first ones).
PROBE_TILES = 8
_SOI = b"\xff\xd8"
#: APP14 "Adobe" segment with transform 0: the three components are R, G, B.
_ADOBE_RGB = b"\xff\xee\x00\x0eAdobe\x00\x64\x00\x00\x00\x00\x00"


class RawTilesUnavailable(Exception):
    """A slide level or patch grid the raw-tile path cannot read; the message says why."""


@dataclass(frozen=True)
class RawLevel:
    """Where one level's JPEG tiles lie in its TIFF file.

    Attributes
    ----------
    path : str
    width, height : int
        Level size in pixels.
    tile_width, tile_height : int
    offsets, counts : numpy.ndarray
        File offset and byte count of each tile, row by row (count 0: no tile).
    prefix : bytes
        What goes before each tile's bytes after its start-of-image marker.
    """

    path: str
    width: int
    height: int
    tile_width: int
    tile_height: int
    offsets: np.ndarray
    counts: np.ndarray
    prefix: bytes

    @property
    def tiles_across(self) -> int:
        """Tiles in one row of the level."""
        return -(-self.width // self.tile_width)

    def streams(self, tiles: list[int]) -> list[torch.Tensor]:
        """Complete JPEG streams of ``tiles`` (indices into :attr:`offsets`), as uint8 tensors."""
        with open(self.path, "rb") as fh:
            return [
                torch.frombuffer(
                    bytearray(self.prefix + os.pread(fh.fileno(), int(n), int(at))[2:]),
                    dtype=torch.uint8,
                )
                for at, n in zip(self.offsets[tiles], self.counts[tiles], strict=True)
            ]


def raw_level(slide: Slide, level: int) -> RawLevel:
    """Locate the JPEG tiles of ``slide``'s ``level`` in its file.

    Raises
    ------
    RawTilesUnavailable
        When the level is not stored as 8-bit RGB/YCbCr JPEG tiles of a TIFF.
    """
    info = slide.info.levels[level]
    try:
        with tifffile.TiffFile(slide.info.path) as tif:
            pages = [
                p for p in tif.pages if p.is_tiled and p.shape[:2] == (info.height, info.width)
            ]
            if not pages:
                raise RawTilesUnavailable(f"level {level} is not a tiled TIFF page")
            return _level_of(slide.info.path, pages[0])
    except (tifffile.TiffFileError, OSError, ValueError) as exc:
        raise RawTilesUnavailable(f"the file is not a TIFF tifffile reads ({exc})") from exc


def _level_of(path: str, page: tifffile.TiffPage) -> RawLevel:
    """The :class:`RawLevel` of one tiled page, if it holds JPEG tiles the raw path decodes."""
    if page.compression != JPEG:
        raise RawTilesUnavailable(f"its tiles are {page.compression.name}, not JPEG")
    if page.photometric not in (RGB, YCBCR) or page.samplesperpixel != 3:
        raise RawTilesUnavailable(f"its JPEG tiles are {page.photometric.name}, not RGB/YCbCr")
    if page.bitspersample != 8 or page.planarconfig != 1 or page.tiledepth != 1:
        raise RawTilesUnavailable("its JPEG tiles are not 8-bit interleaved 2-D tiles")
    tables = page.jpegtables or b""
    prefix = (tables[:-2] if tables else _SOI) + (_ADOBE_RGB if page.photometric == RGB else b"")
    if page.photometric == RGB and _jfif(path, page):
        raise RawTilesUnavailable("its RGB tiles carry JFIF markers, which mean YCbCr to a decoder")
    return RawLevel(
        path=path,
        width=page.imagewidth,
        height=page.imagelength,
        tile_width=page.tilewidth,
        tile_height=page.tilelength,
        offsets=np.asarray(page.dataoffsets, np.int64),
        counts=np.asarray(page.databytecounts, np.int64),
        prefix=prefix,
    )


def _jfif(path: str, page: tifffile.TiffPage) -> bool:
    """True when the page's first stored tile starts with a JFIF segment."""
    first = next((i for i, n in enumerate(page.databytecounts) if n > 0), None)
    if first is None:
        return False
    with open(path, "rb") as fh:
        head = os.pread(fh.fileno(), 11, page.dataoffsets[first])
    return head[2:4] == b"\xff\xe0" and head[6:11] == b"JFIF\x00"


@dataclass(frozen=True)
class CutPlan:
    """Where each pixel of a batch of ``B`` patches of side ``P`` comes from (numpy arrays).

    Every patch is cut from one strip of ``nx`` tiles per patch row: the stack of the
    batch's decoded tiles, plus one white tile at its end, is indexed by ``slots`` and
    ``rows`` (one gather of tile rows), and each patch's ``P`` columns start at its
    ``shifts`` in its strip (a second gather). Rows and tile columns outside the level,
    and tiles the file leaves empty, are the white tile.

    Attributes
    ----------
    tiles : numpy.ndarray
        ``(K,)`` indices (into the level's tiles) of the stored tiles to decode, ascending.
    slots : numpy.ndarray
        ``(B, P, nx)`` place in the stack of the tile under each patch row and strip column.
    rows : numpy.ndarray
        ``(B, P)`` row inside that tile.
    shifts : numpy.ndarray
        ``(B,)`` column of each patch's left edge in its strip.
    edge : numpy.ndarray
        Places in the stack of the tiles of the level's last column when it is partial:
        their columns from ``edge_width`` on lie outside the level (white).
    edge_width : int
    """

    tiles: np.ndarray
    slots: np.ndarray
    rows: np.ndarray
    shifts: np.ndarray
    edge: np.ndarray
    edge_width: int


def plan_cut(level: RawLevel, corners: np.ndarray, side: int) -> CutPlan:
    """The :class:`CutPlan` of patches of ``side`` px at ``corners`` (level pixels, x, y)."""
    th, tw, across = level.tile_height, level.tile_width, level.tiles_across
    y = corners[:, 1, None] + np.arange(side)
    tile_row, rows = np.divmod(y, th)
    first_col, shifts = np.divmod(corners[:, 0], tw)
    first_row, n_rows = tile_row[:, 0], tile_row[:, -1] - tile_row[:, 0] + 1
    n_cols = (shifts + side - 1) // tw + 1
    cols = first_col[:, None] + np.arange(n_cols.max())
    tile_rows = first_row[:, None] + np.arange(n_rows.max())
    # tiles a patch overlaps (a batch's blocks are as large as its largest) and the level has
    row_ok = (tile_rows >= 0) & (tile_rows * th < level.height)
    row_ok &= tile_rows < (first_row + n_rows)[:, None]
    col_ok = (cols >= 0) & (cols < across) & (cols < (first_col + n_cols)[:, None])
    inside = row_ok[:, :, None] & col_ok[:, None, :]
    index = np.where(inside, tile_rows[:, :, None] * across + cols[:, None, :], 0)
    stored = inside & (level.counts[index] > 0)
    tiles = np.unique(index[stored])
    places = np.where(stored, np.searchsorted(tiles, index), len(tiles))
    slots = places[np.arange(len(corners))[:, None], tile_row - first_row[:, None]]
    slots[(y < 0) | (y >= level.height)] = len(tiles)
    edge_width = level.width - (across - 1) * tw
    edge = np.flatnonzero(tiles % across == across - 1) if edge_width < tw else tiles[:0]
    return CutPlan(tiles, slots, rows, shifts, edge, edge_width)


def decode_tiles(streams: list[torch.Tensor], device: torch.device) -> list[torch.Tensor]:
    """Decode JPEG ``streams`` to ``(h, w, 3)`` RGB tensors, on ``device`` where it can.

    nvJPEG rejects some streams libjpeg-turbo reads (CMYK, some progressive or 12-bit
    ones): a batch a CUDA device refuses is decoded on the CPU (the images stay there).
    """
    if device.type != "cuda":
        images = decode_jpeg(streams, mode=ImageReadMode.RGB)
    else:
        try:
            images = decode_jpeg(streams, mode=ImageReadMode.RGB, device=device)
        except RuntimeError:
            images = decode_jpeg(streams, mode=ImageReadMode.RGB)
    return [image.permute(1, 2, 0) for image in images]


def _white(height: int, width: int, device: torch.device) -> torch.Tensor:
    """A white ``(height, width, 3)`` uint8 image on ``device``."""
    return torch.full((height, width, 3), 255, dtype=torch.uint8, device=device)


def _fit(image: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``image`` cropped or padded with white to ``(height, width, 3)``."""
    if image.shape[:2] == (height, width):
        return image
    out = _white(height, width, image.device)
    h, w = min(height, image.shape[0]), min(width, image.shape[1])
    out[:h, :w] = image[:h, :w]
    return out


def cut_patches(stack, plan: CutPlan, take) -> object:
    """Cut a batch's patches ``(B, P, P, 3)`` from its decoded ``stack`` ``(K + 1, th, tw, 3)``.

    Two gathers whatever the batch size (a few kernels on a CUDA device), both copying
    runs of contiguous bytes (tile rows, then patch rows), after whitening the stack's
    columns outside the level. ``take`` turns a plan's numpy array into ``stack``'s
    kind (a numpy array, or a tensor on its device).
    """
    batch, side, _ = plan.slots.shape
    if len(plan.edge):
        stack[take(plan.edge), :, plan.edge_width :] = 255
    strips = stack[take(plan.slots), take(plan.rows[:, :, None])].reshape(batch, side, -1)
    if isinstance(strips, np.ndarray):
        windows = np.lib.stride_tricks.sliding_window_view(strips, 3 * side, axis=2)[:, :, ::3]
    else:
        windows = strips.unfold(2, 3 * side, 3)
    return windows[take(np.arange(batch)), :, take(plan.shifts)].reshape(batch, side, side, 3)


class RawPatchReader:
    """Reads batches of a grid's patches from raw JPEG tiles (see the module docstring).

    Parameters
    ----------
    slide : Slide
    grid : PatchGrid
    device : torch.device
        Where tiles are decoded and patches cut: a CUDA device, else the CPU.
    prepare : callable, optional
        Applied to each delivered patch on the CPU (the encoder's resize), as the
        OpenSlide path's decoding threads do.

    Raises
    ------
    RawTilesUnavailable
        When the slide's patch level or the grid does not allow it.
    """

    def __init__(self, slide: Slide, grid: PatchGrid, device: torch.device, prepare=None):
        self.level = raw_level(slide, grid.patch_level)
        self.corners = level_corners(slide, grid)
        self.grid = grid
        self.device = device if device.type == "cuda" else torch.device("cpu")
        self.prepare = prepare
        #: Gather with numpy on the CPU (torch's CPU indexing copies byte by byte, ~30x slower).
        self._numpy = self.device.type == "cpu"
        self._lock = threading.Lock()
        self._stream = torch.cuda.Stream(device) if device.type == "cuda" else None

    def read(self, rows: range) -> torch.Tensor:
        """Patches ``rows`` of the grid as uint8 ``(B, S, S, 3)`` on the CPU or the device.

        ``S`` is the grid's target size, or the ``prepare`` function's output size. On
        CUDA one batch at a time is decoded and cut on a stream of the reader's own,
        finished before it is handed over: torchvision's decoder writes on a private
        stream into memory allocated on the current one without waiting for it
        (pytorch/vision pull 9606), so that memory must never be what the encoder's
        queued kernels still read.
        """
        if self.device.type != "cuda":
            return self._read(rows)
        with self._lock, torch.cuda.stream(self._stream):
            patches = self._read(rows)
            self._stream.synchronize()
        patches.record_stream(torch.cuda.current_stream(self.device))
        return patches

    def _read(self, rows: range) -> torch.Tensor:
        """:meth:`read` on the current device and stream."""
        plan = plan_cut(self.level, self.corners[np.asarray(rows)], self.grid.patch_size)
        stack = self._stack(plan)
        if self._numpy:
            patches = torch.from_numpy(cut_patches(stack.numpy(), plan, np.asarray))
        else:
            patches = cut_patches(stack, plan, self._tensor)
        size = self.grid.target_size
        if patches.shape[1] != size:
            patches = self._resize(patches, size)
        if self.prepare is not None and self.device.type == "cpu":
            patches = torch.from_numpy(np.stack([self.prepare(p) for p in patches.numpy()]))
        return patches

    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        """A plan's index array on the reader's device."""
        return torch.as_tensor(array, device=self.device)

    def _stack(self, plan: CutPlan) -> torch.Tensor:
        """The plan's tiles decoded and stacked ``(K + 1, th, tw, 3)`` on the reader's
        device, the last one white."""
        lv = self.level
        images = []
        if len(plan.tiles):
            images = decode_tiles(lv.streams(list(plan.tiles)), self.device)
            images = [_fit(image, lv.tile_height, lv.tile_width) for image in images]
        white = _white(lv.tile_height, lv.tile_width, images[0].device if images else self.device)
        return torch.stack([*images, white]).to(self.device)

    def _resize(self, patches: torch.Tensor, size: int) -> torch.Tensor:
        """Shrink ``(B, P, P, 3)`` patches to the grid's target size as the grid does
        (``cv2.INTER_AREA`` on the CPU; area averaging on a CUDA device)."""
        if self._numpy:
            return torch.from_numpy(
                np.stack(
                    [
                        cv2.resize(p, (size, size), interpolation=cv2.INTER_AREA)
                        for p in patches.numpy()
                    ]
                )
            )
        x = torch.nn.functional.interpolate(
            patches.permute(0, 3, 1, 2).float(), size=(size, size), mode="area"
        )
        return x.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1)


def level_corners(slide: Slide, grid: PatchGrid) -> np.ndarray:
    """The grid's patch corners in pixels of its patch level.

    Raises
    ------
    RawTilesUnavailable
        When a corner falls between two pixels of the level.
    """
    corners = grid.coords / slide.info.levels[grid.patch_level].downsample
    if not np.allclose(corners, np.round(corners), rtol=0, atol=1e-6):
        raise RawTilesUnavailable(f"patch corners fall between pixels of level {grid.patch_level}")
    return np.round(corners).astype(np.int64)


def patch_reader(
    slide: Slide, grid: PatchGrid, device: torch.device, decode: str, prepare=None
) -> tuple[RawPatchReader | None, str]:
    """Choose how a run reads its patches, and say which path it took.

    Parameters
    ----------
    decode : str
        ``"openslide"``, or ``"raw"`` to read raw JPEG tiles where the slide allows it.

    Returns
    -------
    (RawPatchReader or None, str)
        The reader (None: OpenSlide per tile) and the path taken: ``"openslide"``,
        ``"raw-cpu"``, ``"raw-cuda"``, or ``"openslide (raw tiles unavailable: WHY)"``.
        On a CUDA device whose decoder gives other pixels than the CPU's for the grid's
        first tiles (:func:`decodes_alike`), the tiles are decoded on the CPU.
    """
    if decode == "openslide":
        return None, "openslide"
    try:
        level = raw_level(slide, grid.patch_level)
        corners = level_corners(slide, grid)
    except RawTilesUnavailable as exc:
        return None, f"openslide (raw tiles unavailable: {exc})"
    first = probe_tiles(level, corners, grid.patch_size)
    if device.type == "cuda" and not decodes_alike(level, first, device):
        device = torch.device("cpu")
    reader = RawPatchReader(slide, grid, device, prepare)
    return reader, f"raw-{reader.device.type}"


def probe_tiles(level: RawLevel, corners: np.ndarray, side: int) -> np.ndarray:
    """The first :data:`PROBE_TILES` stored tiles under the first patches at ``corners``."""
    return plan_cut(level, corners[:PROBE_TILES], side).tiles[:PROBE_TILES]


def decoder_difference(level: RawLevel, tiles: np.ndarray, device: torch.device) -> dict | None:
    """How far ``device``'s decoding of ``tiles`` is from the CPU's: ``{"tiles", "mean",
    "max"}`` (grey levels), or None when the device refuses them or gives other shapes."""
    if not len(tiles):
        return {"tiles": 0, "mean": 0.0, "max": 0}
    streams = level.streams(list(tiles))
    try:
        on_device = decode_jpeg(streams, mode=ImageReadMode.RGB, device=device)
    except RuntimeError:
        return None
    on_cpu = decode_jpeg(streams, mode=ImageReadMode.RGB)
    pairs = list(zip(on_device, on_cpu, strict=True))
    if any(a.shape != b.shape for a, b in pairs):
        return None
    diff = torch.cat([(a.cpu().int() - b.int()).abs().flatten() for a, b in pairs])
    return {"tiles": len(tiles), "mean": float(diff.float().mean()), "max": int(diff.max())}


def decodes_alike(level: RawLevel, tiles: np.ndarray, device: torch.device) -> bool:
    """True when ``device`` decodes ``tiles`` (none: True) to the CPU's shapes, within
    :data:`DEVICE_DECODER_MEAN` of its pixels on average (:func:`decoder_difference`)."""
    difference = decoder_difference(level, tiles, device)
    return difference is not None and difference["mean"] <= DEVICE_DECODER_MEAN
