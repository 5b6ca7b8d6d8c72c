"""The demo case used by ``make run``: a synthetic paired H&E/IHC case in the user cache."""

from __future__ import annotations

from pathlib import Path

from her2viewer.paths import cache_dir
from her2viewer.slide import open_slide
from her2viewer.slide.synthetic import CaseSpec, load_truth, write_case
from her2viewer.tissue import make_patch_grid, segment_tissue
from her2viewer.tissue.masks import mask_iou, read_mask

#: Bump when the synthetic generator changes what it draws.
DEMO_VERSION = 2
DEMO_SIZE = (12000, 9000)
DEMO_SEED = 2026
DEMO_SCORE = 2


def demo_case_dir() -> Path:
    """Return the demo case folder (it may not exist yet)."""
    return cache_dir() / f"demo-v{DEMO_VERSION}" / "demo"


def ensure_demo_case() -> Path:
    """Generate the demo case once into the user cache and return its folder.

    Returns
    -------
    Path
        Folder holding ``he.svs``, ``ihc.svs``, the truth masks and ``truth.json``.
    """
    case_dir = demo_case_dir()
    if not (case_dir / "truth.json").exists():
        spec = CaseSpec("demo", DEMO_SCORE, *DEMO_SIZE, seed=DEMO_SEED, index=0)
        write_case(spec, case_dir.parent)
    return case_dir


def analyse_demo_case(case_dir: Path) -> dict:
    """Run the headless pipeline on a synthetic case and measure it against its truth.

    Segments both slides, lays the 20x/256 px patch grid on the H&E slide and
    compares the tissue masks with the ground truth.

    Parameters
    ----------
    case_dir : Path
        A case folder written by :func:`~her2viewer.slide.synthetic.write_case`.

    Returns
    -------
    dict
        The summary (JSON-serialisable).
    """
    truth = load_truth(case_dir)
    summary: dict = {
        "case": truth["case_id"],
        "synthetic": True,
        "truth": {"ihc_score": truth["ihc_score"], "her2_status": truth["her2_status"]},
    }
    for stain, mask_name in (("he", "tissue"), ("ihc", "ihc_tissue")):
        with open_slide(case_dir / truth[f"{stain}_path"]) as slide:
            seg = segment_tissue(slide)
            expected = read_mask(case_dir / truth["masks"][mask_name])
            entry = {
                "slide": str(slide.info.path),
                "size": [slide.info.width, slide.info.height],
                "tissue_fraction": round(float(seg.mask.mean()), 4),
                "tissue_iou_vs_truth": round(mask_iou(seg.mask, expected), 4),
            }
            if stain == "he":
                entry["patches_20x_256"] = len(make_patch_grid(slide, seg))
            summary[stain] = entry
    return summary


def format_summary(summary: dict) -> str:
    """Return the demo summary as a few readable lines."""
    truth = summary["truth"]
    lines = [
        f"case {summary['case']} (SYNTHETIC demo data, no clinical meaning)",
        f"  truth: HER2 IHC {truth['ihc_score']}+ -> {truth['her2_status']}",
    ]
    for stain in ("he", "ihc"):
        entry = summary[stain]
        line = (
            f"  {stain.upper():3} {entry['size'][0]}x{entry['size'][1]}: "
            f"tissue {100 * entry['tissue_fraction']:.1f}% of slide, "
            f"IoU vs truth {entry['tissue_iou_vs_truth']:.3f}"
        )
        if "patches_20x_256" in entry:
            line += f", {entry['patches_20x_256']} patches (20x, 256 px)"
        lines.append(line)
    return "\n".join(lines)
