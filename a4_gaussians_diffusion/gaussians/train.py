"""Q1.2 / Q1.3: fit 3-D Gaussians to a multi-view scene and evaluate them on held-out views.

    python -m a4_gaussians_diffusion.gaussians.train --data_path <scene> --steps 1000

<scene> is a folder in the course's format (imgs/frameNNNNNN.jpg, poses/frameNNNNNN.npy,
points/points_N.npy; see a4_gaussians_diffusion/gaussians/data.py), a NeRF-synthetic /
instant-ngp folder (transforms_{train,val,test}.json or transforms.json: its test frames are
the held-out views, RGBA is composited on white) or a COLMAP scene (sparse/0 + images/, e.g.
made from photos by `python -m l3d.prepare`: every 8th image is held out, and its points with
their colours initialise the Gaussians); --image_size shrinks the views of those two. Without --data_path the
course's scene under <data root>/a4/truck is used when present, else the built-in cow scene
(rendered once into output/.cache/a4_gaussians/); --data_path synthetic forces the built-in one.

Background: the renders are composited over the scene's own background, in training and in
evaluation: black for a course-format folder (the course's truck is on black and the course
uses bg_colour=(0, 0, 0)), the colour its scene.json records otherwise (the built-in scene:
white). --background black|white|r,g,b overrides it.

Writes into --output_dir: q1_training_progress.gif (4 training views: prediction over ground
truth, every --viz_every iterations), q1_training_final_renders.gif (test views: prediction over
ground truth), gaussians.ply (3DGS layout, with the scene's background and up vector in its
header; render it with
`python -m a4_gaussians_diffusion.gaussians.render --data_path <output_dir>/gaussians.ply`),
losses.png, losses.csv, checkpoints/ (every --save_every steps and at the end; picked up by
--resume; Ctrl-C and SIGTERM save one) and metrics.json
with the mean test PSNR and SSIM (scikit-image, 7x7 window, data range 1), held against
--min_psnr / --min_ssim in its "checks".

Harder-scene options: --init random, --lr_schedule exp|cosine, --ssim_weight, --anisotropic,
--densify (clone/split/prune), --sh; --harder switches them all on at once.

The output folder is locked while a run writes into it; a fresh run into a folder that holds
results writes beside them until its first checkpoint, so a run that stops early (one line:
a diverging learning rate names the step and the parameter group) leaves them as they were.
--resume continues bit for bit where the newest intact checkpoint left off and refuses a
checkpoint of another model (--anisotropic, --sh, --sh_degree).

Live view: --viewer prints a URL that shows the training cameras and, while the page is open, a
render from the camera you move (see l3d.view). TensorBoard logs (losses, Gaussian count, step
time, memory, and a held-out view over its ground truth every --viz_every iterations) go to
<output_dir>/tensorboard/ (`tensorboard --logdir <output_dir>`); --no_tensorboard turns them off.

Several processes or GPUs: `torchrun --nproc_per_node N -m a4_gaussians_diffusion.gaussians.train
--batch_size B ...` renders the B views of every iteration (the global batch) split across the N
processes (gloo on CPUs, nccl on GPUs), sums their gradients and densification statistics, so the
run follows the one-process run with the same --batch_size (up to float rounding); rank 0 alone
writes, metrics.json records "processes" and "train_views_per_s", and a checkpoint resumes on any
number of processes.

--quick is a short run that still converges: 250 iterations (about 25 s of one CPU core on the
built-in scene: test PSNR 26.8 dB against the 25 dB minimum; 26.6 with seed 1, 27.5 after 300
iterations); with --harder, 250 iterations from 2000 random Gaussians with densification from
iteration 50 to 150 (19.4 dB against 17.5).
"""

from __future__ import annotations

import dataclasses

import torch

from l3d import distributed
from l3d.checks import check
from l3d.cli import ScriptParser, finite_float, nonneg_float, nonneg_int, positive_float, positive_int, report, \
    run_cli, script_parser
from l3d.run import RunDir

from .data import load_scene, parse_background, resolve_scene_path
from .flags import add_raster_flags, minus_one_or_nonneg, unit_float
from .trainer import TrainConfig, train

HARDER = dict(init="random", lr_schedule="exp", ssim_weight=0.2, anisotropic=True, densify=True,
              lr_means=0.005, lr_scales=0.005, lr_opacities=0.05, lr_quats=0.002, opacity_reset_every=200)
#: --quick: a short run that converges (the demo's size).
QUICK = dict(steps=250, viz_every=25, save_every=0)
#: --quick --harder: the quick preset plus a smaller random init and an earlier densification.
QUICK_HARDER = dict(num_random=2000, densify_from=50, densify_every=50, densify_until=150)
#: Minimum mean test PSNR / SSIM: Q1.2 (the issue's minimum; the course's seed reaches 27.4 dB,
#: SSIM 0.915 on its truck) and the harder setting: from 2000 random Gaussians, 250 iterations of
#: the plain Q1.2 settings reach 15.9 dB / 0.73 on the built-in scene and the --harder recipe
#: 18.6 to 19.4 dB / 0.83 to 0.84 (seeds 0 to 2), so 17.5 dB / 0.78 is passed only by the recipe.
MIN_PSNR, MIN_SSIM = 25.0, 0.85
HARDER_MIN_PSNR, HARDER_MIN_SSIM = 17.5, 0.78


def build_parser() -> ScriptParser:
    ap = script_parser(__doc__, "a4_gaussians_diffusion/gaussians/train", presets={"quick": QUICK, "harder": HARDER})
    d = TrainConfig()
    ap.add_flag("data_path", help="scene folder: the course format, a NeRF-synthetic / instant-ngp folder "
                                  "(transforms*.json) or a COLMAP scene (sparse/0 + images/, e.g. from python -m "
                                  "l3d.prepare); or 'synthetic' for the built-in cow scene")
    ap.add_flag("image_size", default=None,
                help="NeRF-synthetic / COLMAP scenes: resample the views so that their longer side has this many "
                     "pixels (default: as stored)")
    ap.add_flag("steps", default=d.steps, help="training iterations (--batch_size views each)")
    ap.add_flag("batch_size", default=d.batch_size,
                help="training views per iteration, the loss being their mean; with several processes (torchrun) "
                     "the global batch, each process rendering its share")
    ap.add_flag("save_every", default=d.save_every)
    ap.add_flag("resume")
    ap.add_argument("--background", default=None,
                    help="black, white or r,g,b (0..1): composite the renders over this colour instead of the scene's "
                         "own background (course-format folders: black; scene.json may record another)")
    ap.add_argument("--min_psnr", type=finite_float, default=None,
                    help=f"check: minimum mean test PSNR in dB (default {MIN_PSNR:g}; {HARDER_MIN_PSNR:g} with --harder)")
    ap.add_argument("--min_ssim", type=finite_float, default=None,
                    help=f"check: minimum mean test SSIM (default {MIN_SSIM:g}; {HARDER_MIN_SSIM:g} with --harder)")
    ap.add_argument("--init", choices=["points", "random"], default=d.init, help="initial means")
    ap.add_argument("--num_random", type=positive_int, default=d.num_random, help="Gaussians of the random init")
    ap.add_argument("--anisotropic", action="store_true", help="per-axis scales and rotations")
    ap.add_argument("--sh", action="store_true", help="train spherical-harmonics colours (view dependent)")
    ap.add_argument("--sh_degree", type=int, default=d.sh_degree, choices=[0, 1, 2, 3], help="SH degree with --sh")
    for name in ("means", "scales", "opacities", "colours", "quats", "sh"):
        ap.add_argument(f"--lr_{name}", type=positive_float, default=getattr(d, f"lr_{name}"),
                        help=f"Adam learning rate of the {name}")
    ap.add_argument("--lr_schedule", choices=["none", "exp", "cosine"], default=d.lr_schedule,
                    help="multiply every learning rate by a factor going from 1 to --lr_final_ratio")
    ap.add_argument("--lr_final_ratio", type=positive_float, default=d.lr_final_ratio, help="learning-rate factor at the end")
    ap.add_argument("--ssim_weight", type=unit_float, default=d.ssim_weight, help="loss = (1 - w) L1 + w (1 - SSIM)")
    ap.add_argument("--densify", action="store_true", help="clone / split / prune Gaussians during training")
    ap.add_argument("--densify_from", type=nonneg_int, default=d.densify_from, help="first densification iteration")
    ap.add_argument("--densify_until", type=minus_one_or_nonneg, default=d.densify_until,
                    help="last densification iteration (-1: half the run)")
    ap.add_argument("--densify_every", type=positive_int, default=d.densify_every, help="iterations between densifications")
    ap.add_argument("--densify_grad", type=nonneg_float, default=d.densify_grad,
                    help="average gradient norm w.r.t. the 2-D mean (in NDC-like units, as 3DGS) above which a Gaussian is cloned/split")
    ap.add_argument("--prune_opacity", type=unit_float, default=d.prune_opacity, help="Gaussians below this opacity are pruned")
    ap.add_argument("--opacity_reset_every", type=nonneg_int, default=d.opacity_reset_every,
                    help="with --densify: clamp opacities to 0.01 every this many iterations (0 = never)")
    ap.add_argument("--max_gaussians", type=positive_int, default=d.max_gaussians, help="densification budget")
    ap.add_argument("--harder", dest="preset", action="store_const", const="harder",
                    help="the harder-scene preset (--preset harder): random init, exp schedule, SSIM 0.2, anisotropic, "
                         "densify, higher learning rates; with --quick also " +
                         ", ".join(f"--{k} {v}" for k, v in QUICK_HARDER.items()) + "; flags you give win")
    add_raster_flags(ap, d.gaussians_per_splat, d.tile_size, d.pixel_offset, d.view_rotation)
    ap.add_argument("--viz_every", type=positive_int, default=d.viz_every,
                    help="progress-GIF frame interval (iterations); also TensorBoard's validation image")
    ap.add_argument("--viewer", action="store_true",
                    help="watch the training in the browser (l3d.view.TrainingViewer): the training cameras, and while "
                         "a browser is connected a low-resolution render from its camera, at most every "
                         "--viewer_every seconds and within a fifth of the training time; the URL is printed")
    ap.add_argument("--viewer_port", type=nonneg_int, default=0, help="port of --viewer (0: a free one)")
    ap.add_argument("--viewer_host", default="127.0.0.1", help="address --viewer listens on (0.0.0.0: every interface)")
    ap.add_argument("--viewer_every", type=positive_float, default=1.0, help="seconds between two --viewer renders at most")
    return ap


def config_from_args(args) -> TrainConfig:
    """The run's :class:`TrainConfig` from parsed flags (presets already applied)."""
    harder = args.preset == "harder"
    if harder and args.quick:  # the quick preset of the harder setting: flags you give win
        for k, v in QUICK_HARDER.items():
            if k not in args.given:
                setattr(args, k, v)
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig) if hasattr(args, f.name)}
    values["background"] = parse_background(args.background)
    return TrainConfig(**values)


def main(argv=None):
    args = build_parser().parse_args(argv)
    cfg = config_from_args(args)
    if args.num_threads > 0:
        torch.set_num_threads(args.num_threads)
    with distributed.session(args.device) as dist:  # one process, or one of torchrun's
        dist.check_batch(cfg.batch_size)  # before the folder is made: each process needs a view
        # the folder is locked first (rank 0): a second run into it stops at once, before any work
        with dist.run_dir(args.output_dir, fresh=not args.resume) as run:
            m = train_and_check(args, cfg, run, dist.device)
    if not dist.is_main:
        return None
    print(f"test PSNR {m['psnr']:.3f} dB, SSIM {m['ssim']:.4f} ({m['num_gaussians']} Gaussians, "
          f"{m['train_time_s']:.1f} s of training)")
    return None


def train_and_check(args, cfg: TrainConfig, run: RunDir, device) -> dict:
    """Load the scene, train into ``run``, write metrics.json with the checks; returns the metrics."""
    harder = args.preset == "harder"
    dist = distributed.current()
    with dist.main_first():  # rank 0 renders or converts a scene that needs it once; the others read it
        scene = load_scene(resolve_scene_path(args.data_path), image_size=getattr(args, "image_size", None))
    bg = cfg.background if cfg.background is not None else scene.background
    if dist.is_main:
        print(f"scene {scene.path}: {len(scene.names)} frames of {scene.image_size[1]}x{scene.image_size[0]}, "
              f"{len(scene.train_idx)} train / {len(scene.test_idx)} test, background {tuple(bg)}"
              f"{' (--background)' if cfg.background is not None else ''}")
    viewer = None
    if getattr(args, "viewer", False) and dist.is_main:
        from l3d.view import TrainingViewer

        train_idx = list(scene.train_idx)
        viewer = TrainingViewer(scene.cameras[train_idx], scene.images[train_idx], port=args.viewer_port,
                                host=args.viewer_host, every_s=args.viewer_every, label="Gaussian training")
    try:
        result = train(cfg, scene, run, device, resume=args.resume, viewer=viewer)
    finally:
        if viewer is not None:
            viewer.close()
    m = result.metrics
    if not dist.is_main:
        return m
    if viewer is not None:  # how much of the training time the live view took
        m["viewer"] = {"renders": viewer.renders, "render_time_s": viewer.render_time}
    min_psnr = args.min_psnr if args.min_psnr is not None else (HARDER_MIN_PSNR if harder else MIN_PSNR)
    min_ssim = args.min_ssim if args.min_ssim is not None else (HARDER_MIN_SSIM if harder else MIN_SSIM)
    n_test = len(scene.test_idx)
    m["checks"] = {
        "test_psnr": check(m["psnr"], min=min_psnr, what=f"mean PSNR of the {n_test} held-out views (dB)"),
        "test_ssim": check(m["ssim"], min=min_ssim, what=f"mean SSIM of the {n_test} held-out views (7x7 window)"),
    }
    report(run.path(), m, result.written)
    return m


if __name__ == "__main__":
    run_cli(main)
