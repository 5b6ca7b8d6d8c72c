"""Options shared by the verbs, each defined once (TIAToolbox's ``cli/common.py`` is the model).

A verb adds ``--device``, the batching options, ``-o/--out``, ``--json`` and
``--progress/--quiet`` through these functions, so that one option has one
spelling, one set of choices, one default and one help text everywhere.
"""

from __future__ import annotations

import argparse
import sys

from her2viewer.argtypes import bounded
from her2viewer.devices import DEVICE_CHOICES
from her2viewer.tissue.patching import MAX_PATCH_SIZE

DEVICE_HELP = "compute device: auto picks CUDA, then Apple MPS, then CPU (default auto)"
#: Magnifications a patch grid may ask for (objective powers).
MAGNIFICATION = bounded(float, 0.1, 400.0)
#: Delivered patch sides a grid may ask for.
PATCH_SIZE = bounded(int, 8, MAX_PATCH_SIZE)
#: Random seeds (numpy takes 0 to 2**32 - 1).
SEED = bounded(int, 0, 2**32 - 1)
#: Learning rates: positive and finite (1e-12 stands for "above 0").
LEARNING_RATE = bounded(float, 1e-12, 10.0)
#: Training epochs.
EPOCHS = bounded(int, 1, 100_000)
#: Most torch CPU threads ``--threads`` may ask for (10**12 overflowed torch).
MAX_THREADS = 1024
#: The one parse function of ``--threads`` (one definition for every verb).
THREADS = bounded(int, 1, MAX_THREADS)


class DeprecatedSpelling(argparse.Action):
    """Store an option given by an old spelling, with a note on stderr naming the new one."""

    def __init__(self, option_strings, dest, replacement: str, **kwargs):
        super().__init__(option_strings, dest, **kwargs)
        self.replacement = replacement

    def __call__(self, parser, namespace, values, option_string=None):
        """Store ``values`` and tell the user which spelling replaces ``option_string``."""
        print(
            f"{parser.prog}: note: {option_string} is deprecated and will be removed in the "
            f"next release; use {self.replacement}.",
            file=sys.stderr,
        )
        setattr(namespace, self.dest, values)


def add_device_option(parser: argparse.ArgumentParser) -> None:
    """Add ``--device`` (auto, cuda, mps or cpu; default auto)."""
    parser.add_argument("--device", choices=DEVICE_CHOICES, default="auto", help=DEVICE_HELP)


def add_weights_options(
    parser: argparse.ArgumentParser, *aliases: str, dest: str = "weights"
) -> None:
    """Add where a registered model's weights come from, as every verb that builds one
    says it: ``--weights`` (and ``aliases``, stored in ``dest``), ``--download``,
    ``--random-weights SEED`` (``--random-seed``) and ``--small``."""
    parser.add_argument(
        "--weights",
        *aliases,
        dest=dest,
        help="weights file (.safetensors, .bin, .pth) or folder (an HF snapshot too); "
        "default: $HER2VIEWER_WEIGHTS_<NAME>, then the Hugging Face cache",
    )
    parser.add_argument(
        "--download",
        action="store_true",
        help="download the weights with huggingface_hub when none are found locally",
    )
    parser.add_argument(
        "--random-weights",
        "--random-seed",
        dest="random_weights",
        type=bounded(int, 0, 2**32 - 1),
        metavar="SEED",
        help="seeded random weights (tests, demos and benchmarks only)",
    )
    parser.add_argument(
        "--small",
        action="store_true",
        help="the model's reduced-depth variant, with --random-weights (tests, benchmarks)",
    )


def add_threads_option(parser: argparse.ArgumentParser) -> None:
    """Add ``--threads`` (torch's CPU threads), which :func:`apply_threads` sets."""
    parser.add_argument(
        "--threads",
        type=THREADS,
        help=f"torch CPU threads, 1 to {MAX_THREADS} (default: torch's choice)",
    )


def apply_threads(threads: int | None) -> None:
    """Give torch the CPU threads asked for with ``--threads`` (nothing when left out)."""
    if threads is None:
        return
    import torch  # only when a verb runs, so that building the command line stays light

    torch.set_num_threads(threads)


def add_patch_grid_options(
    parser: argparse.ArgumentParser, size_flag: str = "--patch-size"
) -> None:
    """Add ``--mag`` and the patch side (``size_flag``, stored as ``size`` or ``patch_size``)."""
    parser.add_argument(
        "--mag", type=MAGNIFICATION, default=20.0, help="patch magnification (default 20)"
    )
    parser.add_argument(
        size_flag, type=PATCH_SIZE, default=256, help="patch side in px (default 256)"
    )


def add_batching_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--batch-size`` and ``--workers``; left out, the engine picks them by device."""
    parser.add_argument(
        "--batch-size",
        type=bounded(int, 1, 4096),
        help="patches per batch (default: 32 on CPU, 128 on CUDA)",
    )
    parser.add_argument(
        "--workers",
        type=bounded(int, 1, 64),
        help="tile-decoding threads (default: 4 on CPU, up to 12 on CUDA)",
    )


def add_output_option(
    parser: argparse.ArgumentParser,
    help: str,
    *,
    required: bool = False,
    deprecated: tuple[str, ...] = (),
) -> None:
    """Add ``-o/--out`` (destination ``out``), the one spelling of a verb's output path.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        The verb's parser.
    help : str
        What is written there.
    required : bool
        Whether the verb needs an output path.
    deprecated : tuple of str
        Old spellings of the option (e.g. ``"--output"``), still accepted for one release
        with a note on stderr; hidden from ``--help``.
    """
    target = parser.add_mutually_exclusive_group(required=required) if deprecated else parser
    target.add_argument("-o", "--out", required=required and not deprecated, help=help)
    for spelling in deprecated:
        target.add_argument(
            spelling,
            dest="out",
            action=DeprecatedSpelling,
            replacement="-o/--out",
            help=argparse.SUPPRESS,
        )


def add_json_option(parser: argparse.ArgumentParser, what: str = "the result") -> None:
    """Add ``--json``: print ``what`` as JSON on stdout instead of readable lines."""
    parser.add_argument("--json", action="store_true", help=f"print {what} as JSON")


def add_progress_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--progress`` (the default) and ``--quiet``, stored as the boolean ``progress``."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--progress", action="store_true", default=True, help="print progress lines (default)"
    )
    group.add_argument(
        "--quiet", dest="progress", action="store_false", help="print no progress lines"
    )


def add_roi_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--roi FILE`` and ``--roi-class NAME`` (repeatable), which :func:`roi_region` reads."""
    parser.add_argument(
        "--roi",
        metavar="FILE",
        help="analyse only inside the annotations of FILE (QuPath GeoJSON, ASAP or ImageScope "
        "XML; level-0 px of this slide), minus its Ignore* annotations",
    )
    parser.add_argument(
        "--roi-class",
        action="append",
        metavar="NAME",
        help="use the --roi annotations of this class only (repeatable; default: every class "
        "but Ignore*)",
    )


def roi_region(args):
    """The :class:`~her2viewer.annotations.roi.Region` of ``--roi``/``--roi-class``, or None.

    Raises
    ------
    RoiError
        One sentence when ``--roi-class`` comes without ``--roi``, or the file has no such
        class or no area annotation.
    """
    from her2viewer.annotations.roi import RoiError, load_region

    if args.roi is None:
        if args.roi_class:
            raise RoiError("--roi-class chooses annotations of a --roi FILE; give --roi too.")
        return None
    return load_region(args.roi, args.roi_class)


def size_type(example: str, low: int = 1, high: int | None = None):
    """Return an ``argparse`` type for a ``WxH`` size, each side in ``[low, high]``.

    Parameters
    ----------
    example : str
        A valid size shown in the refusal, e.g. ``"8000x6000"``.
    low, high : int
        Inclusive bounds of each side; ``high=None`` leaves it open.
    """

    def parse(text: str) -> tuple[int, int]:
        try:
            width, height = (int(v) for v in text.lower().split("x"))
        except ValueError as exc:
            raise argparse.ArgumentTypeError(
                f"size must look like {example}, got {text!r}"
            ) from exc
        if not all(low <= side <= (high or side) for side in (width, height)):
            limit = f"{low}-{high}" if high else f"at least {low}"
            raise argparse.ArgumentTypeError(f"each side must be {limit} px, got {text!r}")
        return width, height

    return parse
