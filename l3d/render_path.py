"""Render a camera path (orbit, spiral, interpolation between training views) through a trained
scene to a GIF and a WebM.

    python -m l3d.render_path --scene output/a3_volume_surface/part_3 --path spiral --num_frames 60
    python -m l3d.render_path --scene output/a3_volume_surface/part_7 --path interp --keys 0 20 40
    python -m l3d.render_path --scene gaussians.ply --path orbit --elevation 20
    python -m l3d.render_path --scene gaussians.ply --views <A4 scene folder> --path spiral

--scene is an A3 training run (its folder or one checkpoint: NeRF, VolSDF, NeuS, neural SDF) or
an A4 3DGS .ply. Which assignment reads it is decided by the scene loaders: every
``render_path.py`` module of an assignment package that defines ``claims(path) -> bool`` and
``load_scene(path, device, args) -> PathScene`` (the same modules run on their own as
``python -m a3_volume_surface.render_path`` and ``python -m a4_gaussians_diffusion.gaussians.render_path``).
The core library imports none of them by name.

Paths (:mod:`l3d.camera_paths`):
* orbit: around --center (default: the scene's centre) at --radius (default: the scene's camera
  distance) and --elevation degrees, about the scene's up vector;
* spiral: --rotations turns around the mean of the training cameras, looking where they look,
  upright about the scene's up vector;
* interp: through the training cameras --keys (default: 4 spread over the training set), rotations
  by slerp, centres by --centers (default: around the point the keys look at, keeping their
  distance; spline and linear cut across towards the object between far-apart views).
Spiral and interp need the training cameras: an A3 image-trained run has them (its scene is
loaded as in training); for a .ply, pass the scene folder it was trained on with --views.

Writes <path>.gif, <path>.webm and <path>.png (the middle frame) into --output_dir, and the
path, camera count and render time to metrics.json there.
"""

from __future__ import annotations

import importlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, List, Optional, Sequence, Tuple

import torch

from .camera_paths import PATHS, interpolate_views, orbit, spiral
from .cameras import PerspectiveCameras
from .cli import finite_float, nonneg_int, positive_float, positive_int, report, run_cli, script_parser
from .errors import user_error
from .media import save_gif_with_png, save_webm
from .train import choose_device, progress

__all__ = ["PathScene", "build_parser", "path_cameras", "render_frames", "run", "find_loaders", "main"]

REPO = Path(__file__).resolve().parent.parent
QUICK = {"num_frames": 12, "image_size": 48}


@dataclass
class PathScene:
    """What a camera path needs from a trained scene.

    Attributes:
        render: (cameras (C), (H, W)) -> (C, H, W, 3) float images in [0, 1].
        label: what the scene is (for metrics.json).
        center, up: (3,) orbit centre and world up; radius: default orbit distance.
        focal_length: NDC focal length of orbit cameras (the scene's own cameras' when known).
        image_size: default (H, W).
        training_cameras: the training views (spiral / interp), or None.
        missing_views: why there are no training views (one line for the error message).
    """

    render: Callable[[PerspectiveCameras, Tuple[int, int]], torch.Tensor]
    label: str
    center: Sequence[float] = (0.0, 0.0, 0.0)
    up: Sequence[float] = (0.0, 1.0, 0.0)
    radius: float = 4.0
    focal_length: float = 2.0
    image_size: Tuple[int, int] = (128, 128)
    training_cameras: Optional[PerspectiveCameras] = None
    missing_views: str = "this scene has no training cameras"
    extra: dict = field(default_factory=dict)


def build_parser(doc: Optional[str] = None, default_output: str = "render_path"):
    ap = script_parser(doc or __doc__, default_output, presets={"quick": QUICK})
    ap.add_argument("--scene", required=True,
                    help="the trained scene: an A3 run folder or checkpoint, or an A4 3DGS .ply")
    ap.add_argument("--path", choices=PATHS, default="orbit", help="the camera path")
    ap.add_flag("num_frames", default=60)
    ap.add_flag("fps", default=15.0)
    ap.add_flag("image_size", default=None, help="image side in pixels (default: the scene's training size)")
    ap.add_argument("--elevation", type=finite_float, default=20.0, help="orbit: degrees above the horizontal plane")
    ap.add_argument("--radius", type=positive_float, default=None,
                    help="orbit: distance from the centre (default: the scene's camera distance)")
    ap.add_argument("--center", type=finite_float, nargs=3, default=None, metavar=("X", "Y", "Z"),
                    help="orbit: the point looked at (default: the scene's centre)")
    ap.add_argument("--rotations", type=positive_float, default=2.0, help="spiral: turns over the path")
    ap.add_argument("--keys", type=nonneg_int, nargs="+", default=None, metavar="I",
                    help="interp: indices of the training cameras to pass through, in order "
                         "(default: 4 spread over the training set)")
    ap.add_argument("--centers", choices=("spherical", "spline", "linear"), default="spherical",
                    help="interp: camera centres around the point the keys look at (spherical), on a cubic spline, "
                         "or on straight lines")
    ap.add_argument("--views", default=None,
                    help="the scene folder a .ply was trained on, for its training cameras (spiral / interp)")
    ap.add_argument("--focal_length", type=positive_float, default=None,
                    help="orbit: NDC focal length (default: the scene's)")
    return ap


def path_cameras(scene: PathScene, args) -> PerspectiveCameras:
    """The cameras of ``args.path`` for ``scene``.

    Raises:
        UserError: spiral / interp without training cameras, or --keys outside them."""
    n = int(args.num_frames)
    if args.path == "orbit":
        return orbit(n, center=args.center or scene.center, radius=args.radius or scene.radius,
                     elevation=args.elevation, up=scene.up, focal_length=args.focal_length or scene.focal_length)
    train = scene.training_cameras
    if train is None or len(train) < 2:
        raise user_error("--path", f"orbit for {args.scene} ({scene.missing_views})", args.path)
    if args.path == "spiral":
        return spiral(train, n, rotations=args.rotations, up=scene.up)
    keys = args.keys
    if keys is None:
        keys = torch.linspace(0, len(train) - 1, min(4, len(train))).round().long().tolist()
    bad = [k for k in keys if k >= len(train)]
    if bad or len(keys) < 2:
        raise user_error("--keys", f"at least 2 indices of the {len(train)} training cameras (0 to {len(train) - 1})",
                         " ".join(map(str, keys)))
    return interpolate_views(train, max(n, 2), indices=keys, centers=args.centers)


def render_frames(scene: PathScene, cams: PerspectiveCameras, hw: Tuple[int, int]) -> torch.Tensor:
    """(C, H, W, 3) CPU frames, one camera at a time (bounded memory), with a progress bar."""
    frames = []
    with torch.no_grad():
        for i in progress(range(len(cams)), "render path"):
            img = scene.render(cams[i], hw)
            frames.append(img.reshape(hw[0], hw[1], 3).detach().float().cpu().clamp(0, 1))
    out = torch.stack(frames)
    if not bool(torch.isfinite(out).all()):
        raise user_error(scene.label, "a scene that renders finite colours", "NaN/inf frames")
    return out


def run(args, load: Callable[[str, torch.device, Any], PathScene]) -> dict:
    """Load the scene with ``load``, build the path, render it and write the GIF / WebM / PNG."""
    device = choose_device(args.device)
    scene = load(args.scene, device, args)
    hw = (args.image_size, args.image_size) if args.image_size else tuple(scene.image_size)
    cams = path_cameras(scene, args).to(device)
    t0 = time.perf_counter()
    frames = render_frames(scene, cams, hw)
    t = time.perf_counter() - t0
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    gif, png = save_gif_with_png(out / f"{args.path}.gif", frames, fps=args.fps)
    webm = save_webm(out / f"{args.path}.webm", frames, fps=args.fps)
    metrics = {"scene": str(args.scene), "data": scene.label, "path": args.path, "frames": len(frames),
               "image_size": list(hw), "render_time_s": t, "render_s_per_frame": t / len(frames), "fps": args.fps,
               "mean_intensity": float(frames.mean()), **scene.extra}
    report(out, metrics, written=[gif, webm, png])
    return metrics


def find_loaders() -> List[Any]:
    """The scene-loader modules of the assignment packages (``render_path.py`` with ``claims``)."""
    mods = []
    for path in sorted(REPO.glob("a*_*/**/render_path.py")):
        parts = path.relative_to(REPO).with_suffix("").parts
        if not all((REPO.joinpath(*parts[:i + 1]) / "__init__.py").is_file() for i in range(len(parts) - 1)):
            continue
        mod = importlib.import_module(".".join(parts))
        if hasattr(mod, "claims") and hasattr(mod, "load_scene"):
            mods.append(mod)
    return mods


def main(argv=None):
    args = build_parser().parse_args(argv)
    loaders = find_loaders()
    for mod in loaders:
        if mod.claims(args.scene):
            return run(args, mod.load_scene)
    kinds = "; ".join(getattr(m, "SCENE_KINDS", m.__name__) for m in loaders)
    raise user_error("--scene", f"a trained scene ({kinds})", args.scene)


if __name__ == "__main__":
    run_cli(main)
