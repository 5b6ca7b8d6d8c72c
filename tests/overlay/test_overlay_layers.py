"""Overlay layers, colormaps, legends and scale bars (no Qt)."""

import json

import numpy as np
import pytest

from her2viewer.overlay import (
    HeatmapLayer,
    Legend,
    MaskLayer,
    OverlayError,
    VectorLayer,
    apply_colormap,
    colormap_lut,
    render_level,
)
from her2viewer.overlay.colormaps import nice_ticks
from her2viewer.overlay.scalebar import scale_bar


def test_colormap_lut_and_threshold():
    lut = colormap_lut("viridis")
    assert lut.shape == (256, 3) and lut.dtype == np.uint8
    rgba = apply_colormap(np.array([[0.0, 0.5, 1.0, np.nan]]), "viridis", 0, 1, threshold=0.4)
    assert rgba[0, :, 3].tolist() == [0, 255, 255, 0]
    assert (rgba[0, 2, :3] == lut[255]).all()
    with pytest.raises(ValueError, match="unknown colormap"):
        colormap_lut("rainbowz")
    with pytest.raises(ValueError, match="vmax"):
        apply_colormap(np.zeros((2, 2)), "jet", 1, 1)


def test_legend_ticks_and_bar():
    legend = Legend("jet", 0.0, 1.0, "score", threshold=0.5)
    values = [v for v, _, _ in legend.ticks()]
    assert values[0] == 0.0 and values[-1] == 1.0
    bar = legend.bar(100, 10)
    assert bar.shape == (10, 100, 4)
    assert bar[0, 10, 3] < 255 and bar[0, 90, 3] == 255  # below threshold is dimmed
    assert nice_ticks(0, 7) == [0, 2, 4, 6]


def test_heatmap_render_samples_level0_geometry():
    values = np.array([[0.0, 1.0], [np.nan, 0.5]], np.float32)
    layer = HeatmapLayer("h", values=values, downsample=100, colormap="jet")
    rgba = layer.render((0, 0, 200, 200), (20, 20))
    assert rgba.shape == (20, 20, 4)
    assert rgba[5, 5, 3] == 255 and rgba[15, 5, 3] == 0  # NaN cell is transparent
    assert layer.value_at(150, 50) == "1" and layer.value_at(50, 150) is None
    assert layer.value_at(-5, 0) is None
    version = layer.version
    layer.set_display(threshold=0.9)
    assert layer.version == version + 1
    assert layer.render((0, 0, 200, 200), (20, 20))[5, 5, 3] == 0
    assert layer.render((1000, 1000, 100, 100), (8, 8)) is None


def test_heatmap_from_patches():
    coords = np.array([[0, 0], [256, 0], [256, 512]])
    layer = HeatmapLayer.from_patches("p", coords, [0.1, 0.2, 0.9], 256, (1000, 800))
    assert layer.values.shape == (4, 4)
    assert layer.value_at(300, 600) == "0.9"
    with pytest.raises(OverlayError, match="scores"):
        HeatmapLayer.from_patches("p", coords, [0.1], 256, (1000, 800))


def test_mask_fill_outline_and_errors(tmp_path):
    labels = np.zeros((10, 10), np.uint8)
    labels[2:8, 2:8] = 1
    layer = MaskLayer("tumor", labels=labels, downsample=10, colors={1: (255, 0, 0)})
    full = render_level(layer, 1.0, (100, 100))
    assert full[50, 50].tolist() == [255, 0, 0, 255] and full[5, 5, 3] == 0
    layer.set_display(mode="outline")
    outline = render_level(layer, 1.0, (100, 100))
    assert outline[50, 50, 3] == 0 and outline[20:80, 20, 3].max() == 255
    assert layer.value_at(50, 50) == "tumor" and layer.value_at(5, 5) is None
    with pytest.raises(OverlayError, match="mode"):
        layer.set_display(mode="dotted")
    with pytest.raises(OverlayError, match="2-D"):
        MaskLayer("bad", labels=np.zeros(5), downsample=1)
    with pytest.raises(OverlayError, match="cannot read"):
        MaskLayer.from_png("x", tmp_path / "missing.png", 16)


def test_vector_layer_and_geojson(tmp_path):
    square = [[100, 100], [300, 100], [300, 300], [100, 300], [100, 100]]
    collection = {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "geometry": {"type": "Polygon", "coordinates": [square]},
                "properties": {"objectType": "annotation", "classification": {"name": "Tumor"}},
            },
            {"type": "Feature", "geometry": {"type": "Point", "coordinates": [500, 500]}},
        ],
    }
    path = tmp_path / "a.geojson"
    path.write_text(json.dumps(collection))
    layer = VectorLayer.from_geojson(path)
    assert len(layer.polygons) == 1 and len(layer.points) == 1
    assert layer.value_at(200, 200) == "Tumor" and layer.value_at(400, 400) is None
    rgba = layer.render((0, 0, 600, 600), (60, 60))
    assert rgba[10, 20, 3] > 0 and rgba[50, 50, 3] > 0  # an edge and the point
    assert layer.render((5000, 5000, 100, 100), (10, 10)) is None
    bad = tmp_path / "bad.geojson"
    bad.write_text("{not json")
    with pytest.raises(OverlayError, match="not a readable GeoJSON"):
        VectorLayer.from_geojson(bad)
    bad.write_text('{"type": "Topology"}')
    with pytest.raises(OverlayError, match="not a GeoJSON"):
        VectorLayer.from_geojson(bad)


def test_scale_bar():
    length, label = scale_bar(20, 0.5)
    assert label == "1 mm" and length == pytest.approx(100)
    assert scale_bar(1, 0.5)[1] == "50 µm"
    length, label = scale_bar(3, None)
    assert label == "200 px (no mpp)" and length == pytest.approx(200 / 3)
    with pytest.raises(ValueError):
        scale_bar(0, 0.5)


def test_coolwarm_is_morelands_diverging_map():
    from her2viewer.overlay.colormaps import colormap_lut

    lut = colormap_lut("coolwarm").astype(int)
    assert np.abs(lut[0] - (59, 76, 192)).max() <= 1  # Moreland's end points
    assert np.abs(lut[-1] - (180, 4, 38)).max() <= 1
    assert np.abs(lut[128] - 221).max() <= 2  # neutral grey in the middle
    assert lut[:128, 2].min() > lut[128:, 2].max() - 60  # blue half really is bluer
    assert (np.diff(lut[:, 1][128:]) <= 0).all()  # green falls through the warm half
