"""The thresholds of Assignment 3's pass/fail checks (torch-free: read by the runs, parts.py and the tests).

Every trained part must show the method working even at the demo's small size (``quick=true``):
held-out views rendered to a PSNR, marching-cubes geometry close to the true object, a box
recovered to within a tolerance. Chamfer distances are divided by the object's size, the longest
side of its bounding box.
"""

from __future__ import annotations

NERF_MIN_PSNR = 24.0          # dB on the held-out test views (parts 3, 4.1, 4.2, 8.2 NeRF)
SURFACE_MIN_PSNR = 22.0       # dB on the held-out test views (parts 7, 8.2 VolSDF, 8.3)
MAX_REL_CHAMFER = 0.05        # marching-cubes mesh vs the true object / points, over the object's size
BOX_MAX_ERROR = 0.02          # part 2: max abs error of the recovered centre and of the side lengths
BOX_TRUE_CENTER = (0.25, 0.25, 0.0)
BOX_TRUE_SIDES = (2.0, 1.5, 1.5)
SILHOUETTE_MIN_IOU = 0.95     # parts 5, 8.1: sphere-traced silhouette vs a dense ray march (grazing rays differ)
MIN_PRIMITIVES = 21           # part 8.1: "> 20 SDF primitives"
Q0_MAX_REL_ERROR = 1e-9       # Q0: discrete volume rendering vs the closed form
REFERENCE_MAX_LEVELS = 1.0    # part 1 PNGs: mean abs difference to the course's references, 8-bit levels
REFERENCE_GIF_MAX_LEVELS = 2.5  # part 1 GIF frames (the reference GIF's 256-colour palette adds ~1-2 levels)
REFERENCE_SILHOUETTE_MAX_PIXELS = 120  # part 5: silhouette pixels differing from a reference frame (of 65536)
