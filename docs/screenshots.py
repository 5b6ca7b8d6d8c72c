"""Take the user guide's screenshots from the real application.

Each picture is rendered by the command line a user runs (``her2viewer view ...
--screenshot``), then downscaled and reduced to a palette so that the whole set stays
a few hundred KB. Run it after a change to the viewer (``make docs`` does)::

    QT_QPA_PLATFORM=offscreen .venv/bin/python docs/screenshots.py [NAME ...]
"""

from __future__ import annotations

import csv
import os
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image

IMG = Path(__file__).resolve().parents[1] / "her2viewer" / "guide" / "img"
#: Window size the pictures are rendered at, and the width they are stored at.
WINDOW = "1400x860"
WIDTH = 760
COLOURS = 160


def her2viewer(*args: str) -> None:
    """Run ``her2viewer ARGS`` offscreen in a subprocess, as a user would."""
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    subprocess.run([sys.executable, "-m", "her2viewer", *args], env=env, check=True)


def store(rendered: Path, name: str) -> Path:
    """Downscale ``rendered`` to :data:`WIDTH` and save it as ``<IMG>/<name>.png``."""
    image = Image.open(rendered).convert("RGB")
    image.thumbnail((WIDTH, WIDTH * 4), Image.Resampling.LANCZOS)
    out = IMG / f"{name}.png"
    image.quantize(colors=COLOURS, method=Image.Quantize.MEDIANCUT).save(out, optimize=True)
    return out


def demo_slides() -> tuple[Path, Path]:
    """The demo case's H&E and IHC slides (generated once into the user cache)."""
    from her2viewer.demo import ensure_demo_case

    case = ensure_demo_case()
    return case / "he.svs", case / "ihc.svs"


def example_predictions(path: Path) -> Path:
    """Write an example predictions CSV (40 cases, seeded) for the Evaluation tab."""
    rng = random.Random(14)
    rows = []
    for index in range(40):
        truth = "positive" if index % 2 else "negative"
        p = min(max(rng.gauss(0.68 if truth == "positive" else 0.32, 0.2), 0.0), 1.0)
        prediction = "positive" if p >= 0.5 else "negative"
        rows.append([f"case{index:03d}", truth, prediction, f"{p:.3f}"])
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["case_id", "truth", "prediction", "probability"])
        writer.writerows(rows)
    return path


def shot_demo(tmp: Path) -> Path:
    """The demo pair: H&E with HER2Net's layers beside the registered IHC."""
    her2viewer("view", "--demo", "--size", WINDOW, "--screenshot", str(tmp / "demo.png"))
    return tmp / "demo.png"


def shot_zoom(tmp: Path) -> Path:
    """Both panes zoomed to 5x, moving in step."""
    out = tmp / "zoom.png"
    her2viewer("view", "--demo", "--size", WINDOW, "--magnification", "5", "--screenshot", str(out))
    return out


def shot_layers(tmp: Path) -> Path:
    """One slide with the tissue contours of ``segment`` loaded as a GeoJSON layer."""
    he = tmp / "single" / "he.svs"  # alone in its folder, so that its IHC partner stays closed
    he.parent.mkdir()
    shutil.copy(demo_slides()[0], he)
    her2viewer("segment", str(he), "-o", str(tmp / "segment"))
    geojson = next((tmp / "segment").glob("*.geojson"))
    out = tmp / "layers.png"
    her2viewer(
        "view", str(he), "--geojson", str(geojson), "--size", WINDOW, "--screenshot", str(out)
    )
    return out


def shot_evaluation(tmp: Path) -> Path:
    """The Evaluation tab on an example predictions CSV."""
    predictions = example_predictions(tmp / "predictions.csv")
    out = tmp / "evaluation.png"
    her2viewer("view", "--evaluation", str(predictions), "--size", WINDOW, "--screenshot", str(out))
    return out


SHOTS = {
    "demo": shot_demo,
    "zoom": shot_zoom,
    "layers": shot_layers,
    "evaluation": shot_evaluation,
}


def main(names: list[str]) -> int:
    """Render the named screenshots (all by default) into ``her2viewer/guide/img/``."""
    IMG.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for name in names or SHOTS:
            out = store(SHOTS[name](Path(tmp)), name)
            print(f"{out.relative_to(IMG.parent)}: {out.stat().st_size // 1024} KB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
