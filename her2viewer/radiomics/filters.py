"""Image filters applied before feature extraction, as PyRadiomics defines them.

PyRadiomics calls them image types (``imageType`` in its parameter file). Each
filter maps the whole volume to one or more derived volumes, named as PyRadiomics
names them; the feature names get that name as prefix
(``log-sigma-1-0-mm-3D_firstorder_Mean``, ``wavelet-LLH_glcm_Contrast``):

- ``original``: the image itself.
- ``log``: Laplacian of Gaussian per ``sigma`` (mm), normalised across scale
  (multiplied by sigma^2), with the recursive Gaussian of SimpleITK's
  ``LaplacianRecursiveGaussianImageFilter``.
- ``wavelet``: PyWavelets' undecimated (stationary) 3D transform, ``wavelet``
  (coif1), levels ``start_level`` .. ``start_level + level - 1``, all 8
  decompositions ``LLH`` .. ``HHH`` per level and the last level's ``LLL``;
  odd axes are padded by wrapping one voxel, then cropped, as in PyRadiomics'
  ``_swt3``.
- ``square``, ``squareroot``, ``logarithm``, ``exponential``: the intensity
  mappings of ``imageoperations.get<Name>Image``.
- ``gradient``: gradient magnitude with central differences (zero-flux border),
  in mm units unless ``gradientUseSpacing`` is false.

References: van Griethuysen et al., Cancer Research 77(21), 2017; PyRadiomics
``radiomics/imageoperations.py``.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from scipy import signal

from her2viewer.errors import RadiomicsError
from her2viewer.radiomics.optional import optional_import
from her2viewer.radiomics.volume import Volume

#: Filter name -> its parameters and their defaults (PyRadiomics' keyword names).
FILTER_PARAMS: dict[str, dict[str, object]] = {
    "original": {},
    "log": {"sigma": ()},
    "wavelet": {"wavelet": "coif1", "level": 1, "start_level": 0},
    "square": {},
    "squareroot": {},
    "logarithm": {},
    "exponential": {},
    "gradient": {"gradientUseSpacing": True},
}
IMAGE_TYPES = tuple(FILTER_PARAMS)
#: PyRadiomics' spelling of each image type in parameter files.
PYRADIOMICS_NAMES = {
    "original": "Original",
    "log": "LoG",
    "wavelet": "Wavelet",
    "square": "Square",
    "squareroot": "SquareRoot",
    "logarithm": "Logarithm",
    "exponential": "Exponential",
    "gradient": "Gradient",
}


def canonical_type(name: str) -> str:
    """Lower-case image type name from any spelling (``LoG``, ``log``, ``Wavelet``).

    Raises
    ------
    RadiomicsError
        For an unknown image type.
    """
    key = str(name).strip().lower()
    if key not in FILTER_PARAMS:
        raise RadiomicsError(
            f"Unknown image filter {name!r}; choose from {', '.join(IMAGE_TYPES)}."
        )
    return key


def _as_bool(value) -> bool:
    if isinstance(value, str):
        if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
            raise ValueError(value)
        return value.lower() in ("true", "1", "yes")
    return bool(value)


def _sigmas(value) -> tuple[float, ...]:
    items = value if isinstance(value, list | tuple) else [value]
    sigmas = tuple(float(v) for v in items)
    if not sigmas or min(sigmas) <= 0:
        raise ValueError(value)
    return sigmas


def _non_negative_int(value, low: int) -> int:
    number = int(value)
    if number != float(value) or number < low:
        raise ValueError(value)
    return number


_CHECKS = {
    "sigma": (_sigmas, "one or more positive numbers (mm)"),
    "wavelet": (str, "a PyWavelets wavelet name such as coif1, haar or db2"),
    "level": (lambda v: _non_negative_int(v, 1), "an integer >= 1"),
    "start_level": (lambda v: _non_negative_int(v, 0), "an integer >= 0"),
    "gradientUseSpacing": (_as_bool, "true or false"),
}


def filter_options(image_type: str, params: dict | None = None) -> dict[str, object]:
    """Check one filter's parameters and fill in the defaults.

    Parameters
    ----------
    image_type : str
        One of :data:`IMAGE_TYPES` (any case).
    params : dict, optional
        Parameter name -> value; values may be strings (from the command line).

    Returns
    -------
    dict
        All of the filter's parameters, converted.

    Raises
    ------
    RadiomicsError
        For an unknown filter or parameter, a bad value, or LoG without sigma.
    """
    key = canonical_type(image_type)
    options = dict(FILTER_PARAMS[key])
    for name, value in (params or {}).items():
        if name not in options:
            takes = ", ".join(FILTER_PARAMS[key]) or "no parameters"
            raise RadiomicsError(f"Filter '{key}' has no parameter '{name}'; it takes {takes}.")
        convert, expected = _CHECKS[name]
        try:
            options[name] = convert(value)
        except (TypeError, ValueError) as exc:
            shown = ",".join(map(str, value)) if isinstance(value, list | tuple) else value
            raise RadiomicsError(
                f"Filter '{key}' {name} must be {expected}, got {shown!r}."
            ) from exc
    if key == "log" and not options["sigma"]:
        raise RadiomicsError("Filter 'log' needs sigma values in mm, e.g. log:sigma=1,3.")
    return options


def parse_filter_spec(spec: str) -> tuple[str, dict[str, object]]:
    """Parse a command-line filter such as ``log:sigma=1,3`` or ``wavelet:wavelet=haar,level=2``.

    Parameters are ``name=value`` pairs separated by commas; a value without a
    name continues the previous parameter's list (``sigma=1,3`` is sigma 1 and 3).

    Returns
    -------
    (str, dict)
        The image type and its checked options (see :func:`filter_options`).

    Raises
    ------
    RadiomicsError
        For a malformed, unknown or invalid specification.
    """
    name, _, rest = spec.partition(":")
    params: dict[str, list[str]] = {}
    last = None
    for token in filter(None, (t.strip() for t in rest.split(","))):
        key, eq, value = token.partition("=")
        if eq:
            last = key.strip()
            params.setdefault(last, []).append(value.strip())
        elif last is None:
            raise RadiomicsError(
                f"Cannot read filter {spec!r}; write it like log:sigma=1,3 or wavelet:level=2."
            )
        else:
            params[last].append(token)
    values = {k: v if k == "sigma" else v[-1] for k, v in params.items()}
    return canonical_type(name), filter_options(name, values)


# ------------------------------------------------------------------------------ filters
def _derived(volume: Volume, array: np.ndarray) -> Volume:
    return Volume(array, volume.spacing, volume.origin)


# Deriche's fourth-order fit of the Gaussian (index 0) and its second derivative (index 2):
# a0 e^(l0 x)(A1 cos(w0 x) + B1 sin(w0 x)) + (the same with A2, B2, w1, l1), as in ITK.
_A1, _B1 = (1.3530, -0.6724, -1.3563), (1.8151, -3.4327, 5.2318)
_A2, _B2 = (-0.3531, 0.6724, 0.3446), (0.0902, 0.6100, -2.2355)
_W, _L = (0.6681, 2.0787), (-1.3932, -1.3732)


def _numerator(sd: float, k: int) -> tuple[np.ndarray, float, float, float]:
    """Causal numerator n0..n3 of term ``k`` and its sums S, D, E (moments 0, 1, 2)."""
    (s1, s2), (c1, c2) = np.sin(np.divide(_W, sd)), np.cos(np.divide(_W, sd))
    e1, e2 = np.exp(np.divide(_L, sd))
    a1, b1, a2, b2 = _A1[k], _B1[k], _A2[k], _B2[k]
    n = np.array(
        [
            a1 + a2,
            e2 * (b2 * s2 - (a2 + 2 * a1) * c2) + e1 * (b1 * s1 - (a1 + 2 * a2) * c1),
            2 * e1 * e2 * ((a1 + a2) * c2 * c1 - b1 * c2 * s1 - b2 * c1 * s2)
            + a2 * e1 * e1
            + a1 * e2 * e2,
            e2 * e1 * e1 * (b2 * s2 - a2 * c2) + e1 * e2 * e2 * (b1 * s1 - a1 * c1),
        ]
    )
    return n, n.sum(), n[1] + 2 * n[2] + 3 * n[3], n[1] + 4 * n[2] + 9 * n[3]


def _recursive_gaussian_coefficients(sd: float, order: int):
    """Causal numerator, anti-causal numerator and denominator of the IIR Gaussian.

    ``sd`` is sigma in voxels; ``order`` 0 smooths, 2 takes the second derivative
    normalised across scale (times ``sd**2``), as ITK's ``RecursiveGaussianImageFilter``.
    """
    (c1, c2), (e1, e2) = np.cos(np.divide(_W, sd)), np.exp(np.divide(_L, sd))
    d = np.array(
        [
            -2 * (e2 * c2 + e1 * c1),
            4 * c2 * c1 * e1 * e2 + e1 * e1 + e2 * e2,
            -2 * c1 * e1 * e2 * e2 - 2 * c2 * e2 * e1 * e1,
            e1 * e1 * e2 * e2,
        ]
    )
    sd_sum, dd, ed = 1 + d.sum(), d @ [1, 2, 3, 4], d @ [1, 4, 9, 16]
    n0, sn0, dn0, en0 = _numerator(sd, 0)
    if order == 0:
        n = n0 / (2 * sn0 / sd_sum - n0[0])
    else:
        n2, sn2, dn2, en2 = _numerator(sd, 2)
        beta = -(2 * sn2 - sd_sum * n2[0]) / (2 * sn0 - sd_sum * n0[0])
        sn, dn, en = sn2 + beta * sn0, dn2 + beta * dn0, en2 + beta * en0
        alpha = (
            en * sd_sum**2 - ed * sn * sd_sum - 2 * dn * dd * sd_sum + 2 * dd * dd * sn
        ) / sd_sum**3
        n = sd * sd * (n2 + beta * n0) / alpha
    m = np.array([0.0, n[1] - d[0] * n[0], n[2] - d[1] * n[0], n[3] - d[2] * n[0], -d[3] * n[0]])
    return n, m, np.concatenate([[1.0], d])


def _recursive_gaussian(data: np.ndarray, axis: int, sd: float, order: int) -> np.ndarray:
    """One axis of the IIR Gaussian: causal + anti-causal passes, edges extended to infinity."""
    causal, anti, denominator = _recursive_gaussian_coefficients(sd, order)
    x = np.moveaxis(data, axis, -1)

    def run(numerator: np.ndarray, values: np.ndarray) -> np.ndarray:
        steady = signal.lfilter_zi(numerator, denominator) * values[..., :1]
        return signal.lfilter(numerator, denominator, values, axis=-1, zi=steady)[0]

    out = run(causal, x) + run(anti, x[..., ::-1])[..., ::-1]
    return np.moveaxis(out, -1, axis)


def log_images(volume: Volume, sigma: tuple[float, ...]) -> Iterator[tuple[str, Volume]]:
    """Laplacian of Gaussian of ``volume`` for each sigma (mm), normalised across scale.

    The response is ``sigma^2 * sum_i d2(G * I)/dx_i^2`` with derivatives in mm, computed
    with Deriche's recursive (IIR) Gaussian as SimpleITK's
    ``LaplacianRecursiveGaussianImageFilter`` does for PyRadiomics' ``getLoGImage``
    (Deriche, INRIA RR-1893, 1993); outside the volume the edge voxel repeats.

    Raises
    ------
    RadiomicsError
        When the volume is smaller than 4 voxels along an axis or than the kernel.
    """
    shape, spacing = np.array(volume.array.shape), np.array(volume.spacing, float)
    image = volume.array.astype(np.float64)
    for s in sigma:
        if shape.min() < 4 or np.any(shape < np.ceil(s / spacing) + 1):
            raise RadiomicsError(
                f"The volume {tuple(shape)} is too small for the LoG filter with sigma {s} mm."
            )
        response = np.zeros_like(image)
        for derivative_axis in range(3):
            part = image
            for axis in range(3):
                order = 2 if axis == derivative_axis else 0
                part = _recursive_gaussian(part, axis, s / spacing[axis], order)
            response += part
        yield f"log-sigma-{str(float(s)).replace('.', '-')}-mm-3D", _derived(volume, response)


def wavelet_images(
    volume: Volume, wavelet: str = "coif1", level: int = 1, start_level: int = 0
) -> Iterator[tuple[str, Volume]]:
    """Stationary wavelet decompositions as PyRadiomics ``getWaveletImage`` yields them.

    Letters run over the x, y, z axes (``LLH``: low-pass in x and y, high-pass in z).
    Levels after the first are named ``wavelet2-...``; the last level's approximation
    comes last as ``wavelet-LLL`` (or ``waveletN-LLL``).
    """
    pywt = optional_import("pywt")
    try:
        filters = pywt.Wavelet(wavelet)
    except ValueError as exc:
        raise RadiomicsError(f"Unknown wavelet {wavelet!r}; try coif1, haar or db2.") from exc
    shape = volume.array.shape
    crop = tuple(slice(None, -1 if n % 2 else None) for n in shape)
    data = np.pad(volume.array.astype(np.float64), [(0, n % 2) for n in shape], mode="wrap")
    for _ in range(start_level):
        data = pywt.swtn(data, filters, level=1, start_level=0, axes=(2, 1, 0))[0]["aaa"]
    for index in range(1, level + 1):
        bands = pywt.swtn(data, filters, level=1, start_level=0, axes=(2, 1, 0))[0]
        data = bands.pop("aaa")
        prefix = "wavelet" if index == 1 else f"wavelet{index}"
        for key, band in bands.items():
            name = key.replace("a", "L").replace("d", "H")
            yield f"{prefix}-{name}", _derived(volume, band[crop])
    yield ("wavelet-LLL" if level == 1 else f"wavelet{level}-LLL"), _derived(volume, data[crop])


def square_image(volume: Volume) -> Volume:
    """``(I / sqrt(max|I|))^2`` (PyRadiomics ``getSquareImage``)."""
    image = volume.array.astype(np.float64)
    coeff = 1 / np.sqrt(np.max(np.abs(image)))
    return _derived(volume, (coeff * image) ** 2)


def squareroot_image(volume: Volume) -> Volume:
    """``sign(I) sqrt(|I| max|I|)`` (PyRadiomics ``getSquareRootImage``)."""
    image = volume.array.astype(np.float64)
    coeff = np.max(np.abs(image))
    return _derived(volume, np.sign(image) * np.sqrt(np.abs(image) * coeff))


def logarithm_image(volume: Volume) -> Volume:
    """``sign(I) log(|I| + 1)`` rescaled to the original maximum (``getLogarithmImage``)."""
    image = volume.array.astype(np.float64)
    out = np.sign(image) * np.log1p(np.abs(image))
    return _derived(volume, out * (np.max(np.abs(image)) / np.max(np.abs(out))))


def exponential_image(volume: Volume) -> Volume:
    """``exp(I log(max|I|) / max|I|)`` (PyRadiomics ``getExponentialImage``)."""
    image = volume.array.astype(np.float64)
    peak = np.max(np.abs(image))
    return _derived(volume, np.exp(np.log(peak) / peak * image))


def gradient_image(volume: Volume, gradientUseSpacing: bool = True) -> Volume:  # noqa: N803
    """Gradient magnitude by central differences, edge voxels repeated (``getGradientImage``)."""
    image = np.pad(volume.array.astype(np.float64), 1, mode="edge")
    squares = np.zeros(volume.array.shape)
    inner = (slice(1, -1),) * 3
    for axis in range(3):
        ahead = list(inner)
        behind = list(inner)
        ahead[axis], behind[axis] = slice(2, None), slice(None, -2)
        step = volume.spacing[axis] if gradientUseSpacing else 1.0
        squares += ((image[tuple(ahead)] - image[tuple(behind)]) / (2 * step)) ** 2
    return _derived(volume, np.sqrt(squares))


_SINGLE = {
    "square": square_image,
    "squareroot": squareroot_image,
    "logarithm": logarithm_image,
    "exponential": exponential_image,
}


def filtered_images(volume: Volume, image_types: dict[str, dict]) -> Iterator[tuple[str, Volume]]:
    """Yield ``(image type name, volume)`` for every configured filter, in the given order.

    Parameters
    ----------
    volume : Volume
        The original image.
    image_types : dict
        Image type -> its parameters (checked with :func:`filter_options`).
    """
    for image_type, params in image_types.items():
        key = canonical_type(image_type)
        options = filter_options(key, params)
        if key == "original":
            yield "original", volume
        elif key == "log":
            yield from log_images(volume, **options)
        elif key == "wavelet":
            yield from wavelet_images(volume, **options)
        elif key == "gradient":
            yield "gradient", gradient_image(volume, **options)
        else:
            yield key, _SINGLE[key](volume)
