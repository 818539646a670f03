"""The parts of assignment 4 as the gallery shows them, and the demo's steps that make them.

Torch-free (the gallery imports it). :data:`GAUSSIAN_STEPS` and :data:`DIFFUSION_STEPS` are the
exact ``python -m`` commands that ``python -m a4_gaussians_diffusion.demo`` runs (in one
process, in this order); every :class:`~l3d.checks.Part` names the folder one of them writes,
the checks its metrics.json must pass and the pictures to show first.

Data: without the course's files (a4/chair.ply, a4/truck) the Gaussian parts run on stand-ins
(Gaussians on the cow's surface; a cow scene rendered by l3d in the course's format). No Stable
Diffusion weights can be downloaded here, so the score-distillation parts run twice: on the tiny
random pipeline (their pictures are noise; their checks measure that the code path works: the SDS
gradient reaches the latent, the texture, the NeRF), and, for Q2.1 and Q2.3, on the quick small
prior trained by the demo itself (its pictures show the prompt's shape and colour, and are
labelled as made with the small prior).
"""

from __future__ import annotations

from typing import List, Sequence, Tuple

from l3d.checks import Part

ROOT = "output/a4_gaussians_diffusion"
PKG = "a4_gaussians_diffusion"
#: Where the demo writes the tiny random Stable Diffusion checkpoint.
TINY_MODEL = f"{ROOT}/.tiny_sd_checkpoint"

Step = Tuple[str, List[str]]


def gaussian_steps(root: str = ROOT) -> List[Step]:
    """Q1 at the demo's size: train (250 iterations), turntable of the result, the pre-trained
    .ply plain and with spherical harmonics, the harder setting (250 iterations, random init)."""
    g = f"{root}/gaussians"
    return [
        (f"{PKG}.gaussians.train", ["--quick", "--output_dir", f"{g}/train"]),
        (f"{PKG}.gaussians.render", ["--data_path", f"{g}/train/gaussians.ply", "--quick", "--image_size", "128",
                                     "--num_frames", "36", "--output_dir", f"{g}/render_trained"]),
        (f"{PKG}.gaussians.render", ["--quick", "--image_size", "128", "--num_frames", "36",
                                     "--output_dir", f"{g}/render"]),
        (f"{PKG}.gaussians.render", ["--quick", "--sh", "--image_size", "128", "--num_frames", "36",
                                     "--output_dir", f"{g}/render_sh"]),
        (f"{PKG}.gaussians.train", ["--quick", "--harder", "--output_dir", f"{g}/train_harder"]),
    ]


def diffusion_steps(root: str = ROOT, model: str = TINY_MODEL, device: str = "cpu") -> List[Step]:
    """Q2 at --quick size through the (tiny) checkpoint ``model``."""
    common = ["--quick", "--model", model, "--device", device]
    d = f"{PKG}.diffusion"
    return [
        (f"{d}.image_optimization", ["--prompt", "a hamburger", "--sds_guidance", "1", *common,
                                     "--output_dir", f"{root}/diffusion_image"]),
        (f"{d}.image_optimization", ["--prompt", "a hamburger", "--sds_guidance", "0", *common,
                                     "--output_dir", f"{root}/diffusion_image"]),
        (f"{d}.mesh_optimization", ["--prompt", "a dotted black and white cow", *common,
                                    "--output_dir", f"{root}/diffusion_mesh"]),
        (f"{d}.nerf_optimization", ["--prompt", "a standing corgi dog", *common,
                                    "--output_dir", f"{root}/diffusion_nerf"]),
        (f"{d}.nerf_optimization", ["--prompt", "a standing corgi dog", "--view_dep_text", "1", *common,
                                    "--output_dir", f"{root}/diffusion_nerf"]),
        *small_prior_steps(root, device),
    ]


def small_prior_steps(root: str = ROOT, device: str = "cpu") -> List[Step]:
    """The quick small prior (16 x 16 pictures of four shapes, about 75 s) and two Q2 parts with it:
    image SDS of "a blue sphere" and DreamFusion of "a red sphere" at 16 x 16 (the default prior,
    about 20 minutes, is the one RESULTS.md measures)."""
    d = f"{PKG}.diffusion"
    model = f"{root}/small_prior/pipeline"
    return [
        (f"{d}.train_prior", ["--quick", "--no_cow", "--device", device, "--output_dir", f"{root}/small_prior"]),
        (f"{d}.image_optimization", ["--model", model, "--prompt", "a blue sphere", "--steps", "150", "--warmup", "10",
                                     "--guidance_scale", "7.5", "--snapshot_every", "30", "--device", device,
                                     "--output_dir", f"{root}/small_prior_image"]),
        (f"{d}.nerf_optimization", ["--model", model, "--preset", "small_prior", "--prompt", "a red sphere",
                                    "--render_height", "16", "--render_width", "16", "--n_samples", "24",
                                    "--n_importance", "8", "--num_frames", "24", "--video_size", "48",
                                    "--device", device, "--output_dir", f"{root}/small_prior_nerf"]),
    ]


GAUSSIAN_STEPS = gaussian_steps()
DIFFUSION_STEPS = diffusion_steps()
_TINY = f"python -m {PKG}.diffusion.tiny {TINY_MODEL} && "


def _cmd(step: Step, prefix: str = "") -> str:
    module, argv = step
    words = [f'"{a}"' if " " in a else a for a in argv]
    return prefix + " ".join(["python", "-m", module, *words])


def _part(key: str, title: str, folder: str, step: Step, checks: Sequence[str], media: Sequence[str],
          prefix: str = "") -> Part:
    return Part(key, title, f"{PKG}/{folder}", command=_cmd(step, prefix), checks=tuple(checks), media=tuple(media))


_G, _D = GAUSSIAN_STEPS, DIFFUSION_STEPS
_D_PRIOR = _cmd(_D[5]) + " && "  # the quick small prior the two parts below load
SILHOUETTE = ("centres_in_silhouette", "silhouette_near_centres")

PARTS = [
    _part("A4 1.1", "Render pre-trained 3D Gaussians (turntable: RGB | depth | mask)", "gaussians/render", _G[2],
          SILHOUETTE, ["q1_render.gif"]),
    _part("A4 1.2", "Train 3D Gaussians on a multi-view scene", "gaussians/train", _G[0],
          ("test_psnr", "test_ssim"), ["q1_training_progress.gif", "q1_training_final_renders.gif"]),
    _part("A4 1.2", "Train 3D Gaussians: turntable of the trained model", "gaussians/render_trained", _G[1],
          SILHOUETTE, ["q1_render.gif"]),
    _part("A4 1.3.1", "Rendering with spherical harmonics (view-dependent colour) vs DC colours",
          "gaussians/render_sh", _G[3], ("sh_differs_from_dc", "sh_mean_colour_gap", "centres_in_silhouette"),
          ["q1_render_sh_vs_dc.gif", "q1_render_sh.gif"]),
    _part("A4 1.3.2", "Training on a harder setting: random init, anisotropic, densification, SSIM, lr schedule",
          "gaussians/train_harder", _G[4], ("test_psnr", "test_ssim"),
          ["q1_training_progress.gif", "q1_training_final_renders.gif"]),
    _part("A4 2.1", "SDS image optimisation, with guidance (tiny random pipeline)",
          "diffusion_image/a_hamburger_guidance", _D[0], ("latents_follow_sds",), ["progress.png", "final.png"],
          _TINY),
    _part("A4 2.1", "SDS image optimisation, without guidance (tiny random pipeline)",
          "diffusion_image/a_hamburger_no_guidance", _D[1], ("latents_follow_sds",), ["progress.png", "final.png"],
          _TINY),
    _part("A4 2.2", "Texture a mesh with SDS (tiny random pipeline)", "diffusion_mesh/a_dotted_black_and_white_cow",
          _D[2], ("texture_changed", "sds_reaches_texture"), ["initial_vs_final.gif", "final_mesh.gif"], _TINY),
    _part("A4 2.3", "NeRF from text with SDS, DreamFusion (tiny random pipeline)", "diffusion_nerf/a_standing_corgi_dog",
          _D[3], ("sds_reaches_nerf",), ["videos/rgb.webm", "videos/depth.webm"], _TINY),
    _part("A4 2.4.1", "View-dependent text conditioning (tiny random pipeline)",
          "diffusion_nerf/a_standing_corgi_dog_view_dep", _D[4], ("sds_reaches_nerf", "view_text_changes_guidance"),
          ["videos/rgb.webm", "videos/depth.webm"], _TINY),
    _part("A4 2", "A small text-to-image prior trained here (quick: 16 x 16, four shapes, five colours)",
          "small_prior", _D[5], ("samples_have_prompted_colour",), ["samples.png", "losses.png"]),
    _part("A4 2.1", "SDS image optimisation with the small prior trained here (quick)",
          "small_prior_image/a_blue_sphere_guidance", _D[6], ("latents_follow_sds", "prompted_colour"),
          ["progress.png", "final.png"], _D_PRIOR),
    _part("A4 2.3", "DreamFusion with the small prior trained here (quick, 16 x 16)", "small_prior_nerf/a_red_sphere",
          _D[7], ("sds_reaches_nerf",), ["rgb.png", "videos/rgb.webm", "videos/depth.webm"], _D_PRIOR),
]
