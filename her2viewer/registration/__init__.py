"""Automatic H&E <-> IHC registration in level-0 coordinates.

>>> from her2viewer.registration import register_slides, Registration
>>> reg = register_slides(he_slide, ihc_slide)  # doctest: +SKIP
>>> reg.transform_points([[1000, 2000]])          # IHC level-0 -> H&E level-0  # doctest: +SKIP
"""

from her2viewer.registration.core import (
    refine_local,
    register_slides,
    registration_from_landmarks,
)
from her2viewer.registration.transform import Registration, warp_map

__all__ = [
    "Registration",
    "refine_local",
    "register_slides",
    "registration_from_landmarks",
    "warp_map",
]
