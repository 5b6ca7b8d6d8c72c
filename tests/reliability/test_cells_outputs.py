"""The cells' files on a full disk: one sentence naming the file, nothing half-written."""

from __future__ import annotations

import pytest
from PIL import Image

from her2viewer.analysis.cells import CellsOptions, analyse_cells
from her2viewer.cli.main import main
from her2viewer.outputs import OutputError
from her2viewer.slide import open_slide
from her2viewer.slide.cell_field import draw_cell_field
from tests.reliability.conftest import fill_disk, last_line_error, leftovers

#: PNG resolution of 0.5 um/px (dots per inch).
DPI_05_UM = 50800


@pytest.fixture(scope="module")
def field_png(tmp_path_factory):
    path = tmp_path_factory.mktemp("cells_disk") / "her2.png"
    field = draw_cell_field(500, 400, (0.3, 0.3, 0.3, 0.1), marker="her2", seed=3)
    Image.fromarray(field.rgb).save(path, dpi=(DPI_05_UM,) * 2)
    return path


@pytest.fixture(scope="module")
def result(field_png):
    with open_slide(field_png) as slide:
        return analyse_cells(slide, None, CellsOptions())


@pytest.mark.parametrize("name", ["cells.csv", "cells.parquet", "cells.geojson", "cells.npz"])
def test_full_disk_leaves_nothing(result, tiny_disk, name):
    disk = tiny_disk(64)
    fill_disk(disk, leave_bytes=2048)
    target = disk / name
    with pytest.raises(OutputError, match=name):
        if name.endswith(".geojson"):
            result.write_geojson(target)
        elif name.endswith(".npz"):
            result.save(target)
        else:
            result.write_table(target)
    assert not target.exists() and leftovers(disk) == []


def test_verb_on_a_full_disk_is_one_line(field_png, tiny_disk, capsys):
    disk = tiny_disk(64)
    fill_disk(disk, leave_bytes=2048)
    status = main(["cells", "detect", str(field_png), "-o", str(disk / "cells.geojson")])
    assert status == 2
    last_line_error(capsys, "cells.geojson")
    assert not (disk / "cells.geojson").exists() and leftovers(disk) == []
