"""The ``encoders`` verb group: ``encoders list [--slide] [--json]`` prints the encoder registry
(the patch encoders, or with ``--slide`` the slide encoders of ``embed``)."""

from __future__ import annotations

import json

from her2viewer.cli.options import add_json_option


def register(subparsers) -> None:
    """Add ``encoders list``."""
    group = subparsers.add_parser("encoders", help="the patch encoders her2viewer can run")
    verbs = group.add_subparsers(dest="encoders_verb", required=True, metavar="VERB")
    listing = verbs.add_parser("list", help="the encoder registry: dims, preprocessing, licences")
    listing.add_argument(
        "--slide", action="store_true", help="the slide encoders (`her2viewer embed`) instead"
    )
    add_json_option(listing, "the whole table")
    listing.set_defaults(func=run_list)


def run_list(args) -> int:
    """Print one line per registered encoder, or the table as JSON."""
    if args.slide:
        return list_slide_encoders(args.json)
    from her2viewer.features.registry import SPECS

    rows = [spec.row() for spec in SPECS.values()]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        print(
            f"{row['name']:<15} {row['dim']:>5}-d  {row['architecture']}; {row['resize']}; "
            f"{row['pooling']} pooling; {row['magnification']}; weights: "
            f"{row['hf_repo'] or 'torchvision'} ({row['licence']}); ${row['env_var']}"
        )
    return 0


def list_slide_encoders(as_json: bool) -> int:
    """Print one line per registered slide encoder, or the table as JSON."""
    from her2viewer.features.slide_encoders import slide_specs

    rows = [spec.row() for spec in slide_specs()]
    if as_json:
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        print(
            f"{row['name']:<15} {row['dim']:>5}-d  {row['architecture']}; takes "
            f"{row['tile_encoder']} ({row['tile_dim']}-d) features of {row['patch_size']} px "
            f"tiles at {row['magnification']}; weights: {row['hf_repo']} ({row['licence']}); "
            f"${row['env_var']}"
        )
    return 0
