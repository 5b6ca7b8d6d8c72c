"""Tissue segmentation (CLAM's method) and patch grids with CLAM-compatible files."""

from her2viewer.tissue.geojson import (
    polygons_to_geojson,
    read_geojson_polygons,
    segmentation_to_geojson,
    write_geojson,
)
from her2viewer.tissue.patching import (
    MAX_PATCH_SIZE,
    PatchGrid,
    add_coords_dataset,
    check_grid_fits,
    make_patch_grid,
    patch_scale,
    read_coords_h5,
    write_coords_h5,
)
from her2viewer.tissue.segmentation import (
    PRESETS,
    SegmentationParams,
    TissueSegmentation,
    resolve_params,
    segment_tissue,
)

__all__ = [
    "MAX_PATCH_SIZE",
    "PRESETS",
    "PatchGrid",
    "SegmentationParams",
    "TissueSegmentation",
    "add_coords_dataset",
    "check_grid_fits",
    "make_patch_grid",
    "patch_scale",
    "polygons_to_geojson",
    "read_coords_h5",
    "read_geojson_polygons",
    "resolve_params",
    "segment_tissue",
    "segmentation_to_geojson",
    "write_coords_h5",
    "write_geojson",
]
