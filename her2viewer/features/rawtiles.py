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
#: Largest difference (grey levels) between a CUDA and a CPU decode of the same tile:
#: nvJPEG's IDCT and chroma upsampling round differently from libjpeg-turbo's.
DECODER_TOLERANCE = 2
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
        downsample = slide.info.levels[grid.patch_level].downsample
        corners = grid.coords / downsample
        if not np.allclose(corners, np.round(corners), rtol=0, atol=1e-6):
            raise RawTilesUnavailable(
                f"patch corners fall between pixels of level {grid.patch_level}"
            )
        self.corners = np.round(corners).astype(np.int64)
        self.grid = grid
        self.device = device if device.type == "cuda" else torch.device("cpu")
        self.prepare = prepare
        #: Cut patches with numpy (on the CPU: torch's copies thread themselves, badly here).
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
        tiles = self._decoded_tiles(rows)
        shape = (len(rows), 3, self.grid.patch_size, self.grid.patch_size)
        if self._numpy:
            patches = np.full(shape, 255, np.uint8)
        else:
            patches = torch.full(shape, 255, dtype=torch.uint8, device=self.device)
        for patch, i in zip(patches, rows, strict=True):
            self._paste(patch, self.corners[i], tiles)
        patches = torch.as_tensor(patches).permute(0, 2, 3, 1)
        size = self.grid.target_size
        if patches.shape[1] != size:
            patches = self._resize(patches, size)
        if self.prepare is not None and self.device.type == "cpu":
            patches = torch.from_numpy(np.stack([self.prepare(p) for p in patches.numpy()]))
        return patches

    def _covered(self, corner: np.ndarray) -> list[tuple[int, int]]:
        """Tile columns and rows (in the level) that a patch at ``corner`` overlaps."""
        lv, side = self.level, self.grid.patch_size
        x0, y0 = max(0, corner[0]), max(0, corner[1])
        x1, y1 = min(lv.width, corner[0] + side), min(lv.height, corner[1] + side)
        return [
            (tx, ty)
            for ty in range(y0 // lv.tile_height, -(-y1 // lv.tile_height))
            for tx in range(x0 // lv.tile_width, -(-x1 // lv.tile_width))
        ]

    def _decoded_tiles(self, rows: range) -> dict[tuple[int, int], object]:
        """Each tile the patches cover, decoded (``(3, h, w)``; numpy on the CPU), or None
        for an empty tile."""
        lv = self.level
        wanted = sorted({tile for i in rows for tile in self._covered(self.corners[i])})
        index = [ty * lv.tiles_across + tx for tx, ty in wanted]
        present = [k for k, i in enumerate(index) if lv.counts[i] > 0]
        decoded = dict.fromkeys(wanted)
        if present:
            images = decode_jpeg(
                lv.streams([index[k] for k in present]),
                mode=ImageReadMode.RGB,
                device=self.device,
            )
            if self._numpy:
                images = [image.numpy() for image in images]
            decoded.update({wanted[k]: image for k, image in zip(present, images, strict=True)})
        return decoded

    def _paste(self, patch, corner: np.ndarray, tiles: dict) -> None:
        """Paste the tiles under a patch at ``corner`` into ``patch`` ``(3, P, P)`` (white)."""
        lv, side = self.level, self.grid.patch_size
        for tx, ty in self._covered(corner):
            image = tiles[(tx, ty)]
            if image is None:
                continue
            left, top = tx * lv.tile_width, ty * lv.tile_height
            x0, y0 = max(left, corner[0]), max(top, corner[1])
            x1 = min(left + lv.tile_width, corner[0] + side, lv.width)
            y1 = min(top + lv.tile_height, corner[1] + side, lv.height)
            patch[:, y0 - corner[1] : y1 - corner[1], x0 - corner[0] : x1 - corner[0]] = image[
                :, y0 - top : y1 - top, x0 - left : x1 - left
            ]

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
    """
    if decode == "openslide":
        return None, "openslide"
    try:
        reader = RawPatchReader(slide, grid, device, prepare)
    except RawTilesUnavailable as exc:
        return None, f"openslide (raw tiles unavailable: {exc})"
    if reader.device.type == "cuda" and not _cuda_decodes_alike(reader):
        reader = RawPatchReader(slide, grid, torch.device("cpu"), prepare)
    return reader, f"raw-{reader.device.type}"


def _cuda_decodes_alike(reader: RawPatchReader) -> bool:
    """True when the CUDA decoder gives the CPU's pixels for the grid's first tile
    (within :data:`DECODER_TOLERANCE`); else the reader decodes on the CPU."""
    tiles = reader._covered(reader.corners[0])[:1]
    index = [ty * reader.level.tiles_across + tx for tx, ty in tiles]
    if not index or reader.level.counts[index[0]] == 0:
        return True
    stream = reader.level.streams(index)
    try:
        on_device = decode_jpeg(stream, mode=ImageReadMode.RGB, device=reader.device)[0]
    except RuntimeError:
        return False
    on_cpu = decode_jpeg(stream[0], mode=ImageReadMode.RGB)
    diff = (on_device.cpu().int() - on_cpu.int()).abs().max()
    return on_device.shape == on_cpu.shape and int(diff) <= DECODER_TOLERANCE
