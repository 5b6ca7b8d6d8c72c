"""The ``embed`` verb: patch-feature files -> one slide embedding per slide (TITAN, ...)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from her2viewer.cli.options import (
    add_device_option,
    add_json_option,
    add_output_option,
    add_weights_options,
)
from her2viewer.errors import ModelError
from her2viewer.outputs import check_output_file


def register(subparsers) -> None:
    """Add ``embed``."""
    parser = subparsers.add_parser(
        "embed",
        help="slide embeddings from patch features (slide encoders: `encoders list --slide`)",
    )
    parser.add_argument(
        "features",
        nargs="+",
        metavar="FEATURES",
        help="features .h5 files, or folders of them (flat, CLAM's h5_files/ or TRIDENT's "
        "features_<encoder>/)",
    )
    parser.add_argument(
        "--encoder", required=True, help="slide encoder (`her2viewer encoders list --slide`)"
    )
    add_weights_options(parser)
    add_device_option(parser)
    add_output_option(parser, "the embeddings .h5 (one dataset per slide)", required=True)
    add_json_option(parser, "the slides embedded and the encoder's provenance")
    parser.set_defaults(func=run_embed)


def run_embed(args) -> int:
    """Embed every slide's features and write them to one h5 file, all or nothing."""
    from her2viewer.devices import choose_device  # torch only when the verb runs
    from her2viewer.features import slide_encoders as slides

    spec = slides.slide_spec_for(args.encoder)
    files = features_files(args.features, spec.tile_encoder)
    out = check_output_file(args.out)
    device = choose_device(args.device)
    model, provenance = slides.load_slide_encoder(
        spec.name, args.weights, args.small, args.random_weights, args.download
    )
    model.to(device)
    embeddings = [slides.embed_slide(spec, model, path, device) for path in files]
    slides.write_embeddings(out, spec, provenance, embeddings)
    records = [record for _, record in embeddings]
    if args.json:
        summary = {"out": str(out), "encoder": spec.name, "dim": spec.dim}
        print(json.dumps(summary | {"provenance": provenance, "slides": records}, indent=2))
        return 0
    for record in records:
        print(f"{record['slide']}: {record['tiles']} tiles -> {spec.dim}-d")
        if "warning" in record:
            print(f"warning: {record['warning']}", file=sys.stderr)
    print(f"wrote {out} ({len(records)} slides, {spec.name}, weights {provenance['weights']})")
    return 0


def features_files(inputs: list[str], tile_encoder: str) -> list[Path]:
    """The features files named, and those in the folders named, one per slide.

    Raises
    ------
    ModelError
        A path that does not exist, a folder without features files, or two files
        for one slide (the output holds one dataset per slide name).
    """
    files: dict[str, Path] = {}
    for name in inputs:
        path = Path(name)
        if not path.exists():
            raise ModelError(f"Features file or folder not found: {path}.")
        for found in [path] if path.is_file() else files_in(path, tile_encoder):
            if found.stem in files:
                raise ModelError(
                    f"Two features files for slide '{found.stem}' ({files[found.stem]} and "
                    f"{found}); pass one of them."
                )
            files[found.stem] = found
    return list(files.values())


def files_in(folder: Path, tile_encoder: str) -> list[Path]:
    """A folder's features files: its own ``*.h5``, else ``h5_files/``, else TRIDENT's.

    TRIDENT's are those of ``tile_encoder`` in ``features_<enc_name>/``, of the folder
    or of its sub-folders (a job folder holds one per magnification and tile size).

    Raises
    ------
    ModelError
        When none is found.
    """
    from her2viewer.features.trident import FOLDER_PREFIX, trident_name

    trident = f"{FOLDER_PREFIX}{trident_name(tile_encoder)}"
    for pattern in ("*.h5", "h5_files/*.h5", f"{trident}/*.h5", f"*/{trident}/*.h5"):
        found = sorted(folder.glob(pattern))
        if found:
            return found
    raise ModelError(
        f"No features files in {folder} (looked for *.h5, h5_files/*.h5 and TRIDENT's "
        f"{trident}/*.h5)."
    )
