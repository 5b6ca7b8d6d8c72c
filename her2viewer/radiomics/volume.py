"""CT/MR volumes and ROI masks: reading and writing NRRD and NIfTI-1 files.

A :class:`Volume` holds the voxels as a numpy array indexed ``(z, y, x)`` (the
order SimpleITK's ``GetArrayFromImage`` and PyRadiomics use) with the voxel
spacing in millimetres in the same order. Readers are small and dependency-free;
they cover what scanners and 3D Slicer write (NRRD raw/gzip/bzip2, attached or
detached data; NIfTI-1 ``.nii``/``.nii.gz``).
"""

from __future__ import annotations

import bz2
import gzip
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from her2viewer.errors import RadiomicsError
from her2viewer.radiomics.optional import optional_import

_NRRD_TYPES = {
    "signed char": "i1",
    "int8": "i1",
    "int8_t": "i1",
    "uchar": "u1",
    "unsigned char": "u1",
    "uint8": "u1",
    "uint8_t": "u1",
    "short": "i2",
    "short int": "i2",
    "signed short": "i2",
    "int16": "i2",
    "int16_t": "i2",
    "ushort": "u2",
    "unsigned short": "u2",
    "uint16": "u2",
    "uint16_t": "u2",
    "int": "i4",
    "signed int": "i4",
    "int32": "i4",
    "int32_t": "i4",
    "uint": "u4",
    "unsigned int": "u4",
    "uint32": "u4",
    "uint32_t": "u4",
    "longlong": "i8",
    "long long": "i8",
    "int64": "i8",
    "int64_t": "i8",
    "ulonglong": "u8",
    "unsigned long long": "u8",
    "uint64": "u8",
    "uint64_t": "u8",
    "float": "f4",
    "double": "f8",
}
_NRRD_NAMES = {
    "i1": "int8",
    "u1": "uint8",
    "i2": "int16",
    "u2": "uint16",
    "i4": "int32",
    "u4": "uint32",
    "i8": "int64",
    "u8": "uint64",
    "f4": "float",
    "f8": "double",
}
_NIFTI_TYPES = {
    2: "u1",
    4: "i2",
    8: "i4",
    16: "f4",
    64: "f8",
    256: "i1",
    512: "u2",
    768: "u4",
    1024: "i8",
    1280: "u8",
}


@dataclass
class Volume:
    """A 3D image or mask.

    Attributes
    ----------
    array : numpy.ndarray
        Voxels indexed ``(z, y, x)``.
    spacing : tuple of float
        Voxel size in mm, ``(z, y, x)``.
    origin : tuple of float
        Physical position of the first voxel, ``(x, y, z)`` as in the file.
    """

    array: np.ndarray
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)

    @property
    def voxel_volume(self) -> float:
        """Volume of one voxel in mm^3."""
        return float(np.prod(self.spacing))


def load_volume(path: str | Path) -> Volume:
    """Read a NRRD (``.nrrd``, ``.nhdr``), NIfTI-1 (``.nii``, ``.nii.gz``) or DICOM series.

    Parameters
    ----------
    path : str or Path
        The file, or a folder holding one DICOM series.

    Returns
    -------
    Volume

    Raises
    ------
    RadiomicsError
        When the file is missing, of an unknown format or damaged.
    """
    path = Path(path)
    if not path.exists():
        raise RadiomicsError(f"Volume file not found: {path}")
    name = path.name.lower()
    try:
        if path.is_dir():
            return read_dicom_series(path)
        if name.endswith((".nrrd", ".nhdr")):
            return read_nrrd(path)
        if name.endswith((".nii", ".nii.gz")):
            return read_nifti(path)
    except (OSError, ValueError, EOFError, struct.error, AttributeError, RuntimeError) as exc:
        raise RadiomicsError(f"Cannot read volume {path.name}: {exc}") from exc
    raise RadiomicsError(
        f"Unknown volume format for {path.name}; use .nrrd, .nhdr, .nii, .nii.gz "
        "or a folder with a DICOM series."
    )


def _nrrd_header(raw: bytes) -> tuple[dict[str, str], int]:
    """Parse a NRRD header; return the fields and the offset of the data."""
    if not raw.startswith(b"NRRD000"):
        raise ValueError("not a NRRD file (missing NRRD magic)")
    end = raw.find(b"\n\n")
    if end < 0:
        end = len(raw)
    fields: dict[str, str] = {}
    for line in raw[:end].decode("latin-1").splitlines()[1:]:
        key, sep, value = line.partition(": ")
        if line.startswith("#") or not sep or ":=" in key:
            continue  # comment or key/value pair
        fields[key.strip().lower()] = value.strip()
    return fields, end + 2


def _nrrd_spacing(fields: dict[str, str], ndim: int) -> tuple[float, ...]:
    """Voxel spacing in file axis order (x, y, z) from the NRRD fields."""
    if "space directions" in fields:
        vectors = [v for v in fields["space directions"].split() if v != "none"]
        norms = []
        for vec in vectors:
            comps = [float(c) for c in vec.strip("()").split(",")]
            norms.append(float(np.linalg.norm(comps)))
        return tuple(norms[:ndim])
    if "spacings" in fields:
        return tuple(float(v) for v in fields["spacings"].split()[:ndim])
    return (1.0,) * ndim


def read_nrrd(path: str | Path) -> Volume:
    """Read a 3D NRRD file (raw, gzip or bzip2 encoding; attached or detached data).

    Parameters
    ----------
    path : str or Path
        ``.nrrd`` or ``.nhdr`` file.

    Returns
    -------
    Volume
    """
    path = Path(path)
    raw = path.read_bytes()
    fields, offset = _nrrd_header(raw)
    sizes = [int(v) for v in fields.get("sizes", "").split()]
    if len(sizes) != 3:
        raise ValueError(f"expected a 3D volume, the header says sizes {sizes}")
    type_name = fields.get("type", "").lower()
    if type_name not in _NRRD_TYPES:
        raise ValueError(f"unsupported NRRD voxel type {type_name!r}")
    endian = "<" if fields.get("endian", "little") == "little" else ">"
    dtype = np.dtype(endian + _NRRD_TYPES[type_name])
    data = raw[offset:]
    if "data file" in fields or "datafile" in fields:
        data = (path.parent / fields.get("data file", fields.get("datafile"))).read_bytes()
    encoding = fields.get("encoding", "raw").lower()
    if encoding in ("gzip", "gz"):
        data = gzip.decompress(data)
    elif encoding in ("bzip2", "bz2"):
        data = bz2.decompress(data)
    elif encoding != "raw":
        raise ValueError(f"unsupported NRRD encoding {encoding!r}")
    count = int(np.prod(sizes))
    flat = (
        np.frombuffer(data, dtype=dtype, count=count)
        if len(data) >= count * dtype.itemsize
        else None
    )
    if flat is None:
        raise ValueError("the data is shorter than the header's sizes")
    array = flat.reshape(sizes[::-1]).astype(dtype.newbyteorder("="))
    spacing = _nrrd_spacing(fields, 3)
    origin = tuple(float(c) for c in fields.get("space origin", "(0,0,0)").strip("()").split(","))
    return Volume(array, tuple(spacing[::-1]), origin)


def write_nrrd(path: str | Path, volume: Volume, compress: bool = True) -> Path:
    """Write a volume as an attached NRRD file (gzip encoding unless ``compress=False``).

    Parameters
    ----------
    path : str or Path
        Output ``.nrrd`` file.
    volume : Volume
        What to write.
    compress : bool
        gzip the data.

    Returns
    -------
    Path
    """
    path = Path(path)
    array = np.ascontiguousarray(volume.array)
    code = array.dtype.str[1:]
    if code not in _NRRD_NAMES:
        raise RadiomicsError(f"Cannot write voxel type {array.dtype} to NRRD.")
    sx = volume.spacing[::-1]
    directions = " ".join(
        "(" + ",".join(repr(sx[i]) if j == i else "0" for j in range(3)) + ")" for i in range(3)
    )
    header = (
        "NRRD0004\n"
        f"type: {_NRRD_NAMES[code]}\ndimension: 3\nspace: left-posterior-superior\n"
        f"sizes: {' '.join(str(s) for s in array.shape[::-1])}\n"
        f"space directions: {directions}\nkinds: domain domain domain\n"
        f"endian: little\nencoding: {'gzip' if compress else 'raw'}\n"
        f"space origin: ({','.join(repr(float(o)) for o in volume.origin)})\n\n"
    )
    data = array.astype(array.dtype.newbyteorder("<")).tobytes()
    path.write_bytes(header.encode("ascii") + (gzip.compress(data) if compress else data))
    return path


def read_nifti(path: str | Path) -> Volume:
    """Read a NIfTI-1 volume (``.nii`` or ``.nii.gz``), applying ``scl_slope``/``scl_inter``.

    Parameters
    ----------
    path : str or Path
        The file.

    Returns
    -------
    Volume
    """
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    endian = "<" if struct.unpack("<i", raw[:4])[0] == 348 else ">"
    if struct.unpack(endian + "i", raw[:4])[0] != 348:
        raise ValueError("not a NIfTI-1 file (header size is not 348)")
    dims = struct.unpack(endian + "8h", raw[40:56])
    datatype = struct.unpack(endian + "h", raw[70:72])[0]
    pixdim = struct.unpack(endian + "8f", raw[76:108])
    vox_offset = int(struct.unpack(endian + "f", raw[108:112])[0])
    slope, inter = struct.unpack(endian + "2f", raw[112:120])
    origin = struct.unpack(endian + "3f", raw[268:280])  # qoffset_x/y/z
    if dims[0] < 3 or any(d > 1 for d in dims[4 : dims[0] + 1]):
        raise ValueError(f"expected a 3D volume, the header says {dims[0]} dimensions")
    if datatype not in _NIFTI_TYPES:
        raise ValueError(f"unsupported NIfTI data type code {datatype}")
    shape = dims[1:4]
    dtype = np.dtype(endian + _NIFTI_TYPES[datatype])
    flat = np.frombuffer(raw, dtype=dtype, count=int(np.prod(shape)), offset=vox_offset)
    array = flat.reshape(shape[::-1]).astype(dtype.newbyteorder("="))
    if slope not in (0.0, 1.0) or inter != 0.0:
        array = array * slope + inter
    return Volume(array, (float(pixdim[3]), float(pixdim[2]), float(pixdim[1])), origin)


def write_nifti(path: str | Path, volume: Volume) -> Path:
    """Write a volume as NIfTI-1 (gzip-compressed when the name ends in ``.gz``).

    Parameters
    ----------
    path : str or Path
        Output ``.nii`` or ``.nii.gz`` file.
    volume : Volume
        What to write.

    Returns
    -------
    Path
    """
    path = Path(path)
    array = np.ascontiguousarray(volume.array)
    codes = {v: k for k, v in _NIFTI_TYPES.items()}
    code = codes.get(array.dtype.str[1:])
    if code is None:
        raise RadiomicsError(f"Cannot write voxel type {array.dtype} to NIfTI.")
    header = bytearray(352)
    struct.pack_into("<i", header, 0, 348)
    struct.pack_into("<8h", header, 40, 3, *array.shape[::-1], 1, 1, 1, 1)
    struct.pack_into("<2h", header, 70, code, array.dtype.itemsize * 8)
    struct.pack_into("<8f", header, 76, 1.0, *volume.spacing[::-1], 1, 1, 1, 1)
    struct.pack_into("<f", header, 108, 352.0)
    struct.pack_into("<2f", header, 112, 1.0, 0.0)
    struct.pack_into("<3f", header, 268, *volume.origin)
    header[344:348] = b"n+1\x00"
    data = bytes(header) + array.astype(array.dtype.newbyteorder("<")).tobytes()
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)
    return path


def _dicom_slices(folder: Path) -> list:
    """Every DICOM image in ``folder`` that has a position, as pydicom datasets."""
    pydicom = optional_import("pydicom")
    invalid_dicom = pydicom.errors.InvalidDicomError
    slices = []
    for item in sorted(p for p in folder.iterdir() if p.is_file()):
        try:
            ds = pydicom.dcmread(item)
        except (invalid_dicom, OSError):
            continue  # not a DICOM file (DICOMDIR, notes, thumbnails)
        if "PixelData" in ds and "ImagePositionPatient" in ds:
            slices.append(ds)
    return slices


def read_dicom_series(folder: str | Path) -> Volume:
    """Read one DICOM series (one file per slice) from a folder.

    Slices are ordered along the slice normal; values get ``RescaleSlope`` and
    ``RescaleIntercept`` (Hounsfield units for CT).

    Raises
    ------
    RadiomicsError
        No slice, several series, or slices of different sizes.
    """
    folder = Path(folder)
    slices = _dicom_slices(folder)
    if not slices:
        raise RadiomicsError(f"No DICOM image with a position was found in {folder}.")
    series = {str(ds.get("SeriesInstanceUID", "")) for ds in slices}
    if len(series) > 1:
        raise RadiomicsError(f"{folder} holds {len(series)} DICOM series; put one per folder.")
    row, col = (np.array(v, float) for v in np.reshape(slices[0].ImageOrientationPatient, (2, 3)))
    normal = np.cross(row, col)
    slices.sort(key=lambda ds: float(np.dot(normal, np.array(ds.ImagePositionPatient, float))))
    if len({ds.pixel_array.shape for ds in slices}) > 1:
        raise RadiomicsError(f"The slices in {folder} differ in size.")
    array = np.stack(
        [
            ds.pixel_array * float(ds.get("RescaleSlope", 1)) + float(ds.get("RescaleIntercept", 0))
            for ds in slices
        ]
    )
    positions = [np.dot(normal, np.array(ds.ImagePositionPatient, float)) for ds in slices]
    dz = (
        float(np.median(np.diff(positions)))
        if len(slices) > 1
        else float(slices[0].get("SliceThickness", 1.0))
    )
    dy, dx = (float(v) for v in slices[0].PixelSpacing)
    if np.allclose(array, np.round(array)) and np.abs(array).max() < 2**15:
        array = array.astype(np.int16)
    origin = tuple(float(v) for v in slices[0].ImagePositionPatient)
    return Volume(array, (dz, dy, dx), origin)
