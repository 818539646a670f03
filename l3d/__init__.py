"""l3d: a small, vectorised PyTorch 3D core that follows PyTorch3D's conventions.

Modules
-------
cameras     look-at transforms, FoV / NDC / screen perspective and orthographic cameras, OpenCV
            conversion both ways, projection, unprojection
structures  batched ``Meshes`` and ``Pointclouds`` (padded tensors + lengths), normals, textures
raster      mesh z-buffer rasteriser and point rasteriser (fully vectorised, differentiable
            with respect to vertex attributes, textures and vertex positions through the
            barycentrics)
shading     point lights, materials, Phong shading, alpha compositing, the high-level renderers
ops         knn, chamfer, area-weighted surface sampling, Laplacian smoothing, ico_sphere,
            marching cubes
io          OBJ/MTL and PLY meshes and point clouds
media       images, GIF/MP4/WebM, captions
data        data root, dataset registry, downloads, procedural stand-ins
errors      UserError (bad input: one line, exit 2) versus bugs (traceback)
run         a run's files: atomic writes, output-folder lock, checkpoints that only advance to
            finite states, loss log, metrics.json, command.txt
train       the training loop: device choice, seeding, mixed precision, progress, Ctrl-C/SIGTERM
cli         the shared flag vocabulary, presets such as --quick, the entry-point wrapper
checks      pass/fail numbers of each part and the parts list
report      HTML gallery of everything under ``output/``

Dimension letters used in every docstring and shape comment
----------------------------------------------------------
N  batch (meshes, point clouds, images)      C  cameras
P  points                                     V  vertices
F  faces                                      R  rays
S  samples per ray                            K  neighbours / points per pixel
H, W  image height and width (pixels)         T  texture coordinates (UV vertices)

The camera conventions (world / view / NDC / screen spaces, row vectors, pixel centres) are
written once, in the docstring of :mod:`l3d.cameras`.
"""

import os as _os

__version__ = "0.1.0"


def _cpu_wait_policy() -> None:
    """Let torch's idle CPU threads sleep instead of spin (``OMP_WAIT_POLICY=PASSIVE``) unless the
    user chose a policy. On cores shared with other programs, a spinning thread burns the time slice
    its descheduled partner needs, and a render of many short parallel operations ran up to 25
    times slower (``bench/bench_omp_wait.py``); on quiet cores sleeping measured within the
    run-to-run noise, at most about 20 % slower on steps of thousands of small operations
    (``OMP_WAIT_POLICY=ACTIVE`` gets spinning back on a dedicated machine).
    OpenMP reads the variable once, when torch loads, so this runs on ``import l3d`` (every
    assignment package imports l3d first). ``L3D_OMP_WAIT_POLICY=default`` keeps the runtime's own."""
    choice = _os.environ.get("L3D_OMP_WAIT_POLICY", "PASSIVE").strip()
    if choice.lower() != "default":
        _os.environ.setdefault("OMP_WAIT_POLICY", choice.upper())


_cpu_wait_policy()
