"""The parts of assignment 4 as the gallery shows them, and the demo's steps that make them.

Torch-free (the gallery imports it). :data:`GAUSSIAN_STEPS` and :data:`DIFFUSION_STEPS` are the
exact ``python -m`` commands that ``python -m a4_gaussians_diffusion.demo`` runs (in one
process, in this order); every :class:`~l3d.checks.Part` names the folder one of them writes,
the checks its metrics.json must pass and the pictures to show first.

Data: without the course's files (a4/chair.ply, a4/truck) the Gaussian parts run on stand-ins
(Gaussians on the cow's surface; a cow scene rendered by l3d in the course's format), and the
score-distillation parts always run on the tiny random diffusion pipeline (no Stable Diffusion
weights can be downloaded here): their pictures are noise, and their checks measure that the
code path works (the SDS gradient reaches the latent, the texture, the NeRF).
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
]
