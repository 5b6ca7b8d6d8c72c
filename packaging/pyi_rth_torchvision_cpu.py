"""PyInstaller runtime hook: torchvision without its compiled operators.

The bundle is built on CPU-only torch. Where the only torchvision wheel at hand is
the CUDA build, its ``_C`` extension (detection operators such as ``nms`` and
``roi_align``, which her2viewer does not use) cannot load and the spec leaves it
out. torchvision then still registers fake kernels for ``nms`` and ``qnms`` when
it is imported, which fails unless those two operators are declared; this hook
declares their schemas so that ``import torchvision`` works. When the bundle
carries a loadable ``_C`` (a CPU torchvision wheel), the hook does nothing.
"""

import sys
from pathlib import Path

if not any(Path(sys._MEIPASS, "torchvision").glob("_C.*")):
    import torch

    _TORCHVISION_OPS = torch.library.Library("torchvision", "DEF")
    _SCHEMA = "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor"
    for _name in ("nms", "qnms"):
        _TORCHVISION_OPS.define(_name + _SCHEMA)
