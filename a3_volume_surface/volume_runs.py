"""The three modes of ``volume_rendering_main``: render (part 1), train (part 2), train_nerf (parts 3, 4).

Each ``run_*`` takes the plain config dict, the device and the output folder (see
:func:`a3_volume_surface.common.prepare`) and returns the metrics it wrote.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Mapping

import numpy as np
import torch
import torch.nn.functional as F

from l3d import distributed
from l3d.cameras import FoVPerspectiveCameras, look_at_view_transform
from l3d.errors import NonFiniteError
from l3d.media import save_image
from l3d.rays import image_rays, ndc_grid, rays_from_ndc
from l3d.shading import render_points
from l3d.structures import Pointclouds

from .cameras import look_at_cameras, surround_cameras
from l3d.checks import check

from .common import (
    Job, LiveMonitor, average_gradients, broadcast_state, comparison_panel, end_of_training, finish, local_rows,
    lookup_pixels, psnr, save_gif, train_loop, wh_to_hw,
)
from .export import export_after_training
from .data import SCENE_FORMATS, box_data_label, load_box_images, load_nerf_scene, load_scene_folder, scene_data_label
from .measure import (
    mean_abs_levels, ray_box_hits, reference_frame, reference_image, reference_path, to_levels, turntable_checks,
)
from .model import Model, render_images
from .targets import (
    BOX_MAX_ERROR, BOX_TRUE_CENTER, BOX_TRUE_SIDES, NERF_MIN_PSNR, REFERENCE_GIF_MAX_LEVELS, REFERENCE_MAX_LEVELS,
)

__all__ = ["run_render", "run_train_box", "run_train_nerf", "grid_image", "rays_image", "depth_image",
           "sample_points_image", "BOX_EYES"]

BOX_EYES = ((-2.5, 0.0, 0.0), (-1.0, 0.0, -2.2), (0.0, 0.0, -2.5), (1.0, 0.0, -2.2))  # train_box cameras
BOX_LIMIT = 100.0  # scene units: the cameras sit 2.5 from the origin and rays end at depth 5


def box_guard(sdf) -> Any:
    """``guard(epoch)`` for :func:`a3_volume_surface.common.train_loop`: the fitted box's sides must
    stay positive and, like its centre, within :data:`BOX_LIMIT` of the scene (a diverged run, e.g.
    a far too large learning rate, otherwise reports sides such as (6e6, -6e6, 6e6))."""

    def fmt(t):
        return "(" + ", ".join(f"{v:.4g}" for v in t.tolist()) + ")"

    def guard(epoch: int) -> None:
        sides = sdf.side_lengths.detach().reshape(-1).cpu()
        center = sdf.center.detach().reshape(-1).cpu()
        if bool((sides <= 0).any()) or bool((sides > BOX_LIMIT).any()):
            raise NonFiniteError(
                f"parameter implicit_function.sdf.side_lengths became {fmt(sides)} at epoch {epoch}: expected "
                f"positive sides below {BOX_LIMIT:g}; the fit diverged, lower training.lr",
                step=epoch, name="implicit_fn.sdf.side_lengths")
        if bool((center.abs() > BOX_LIMIT).any()):
            raise NonFiniteError(
                f"parameter implicit_function.sdf.center became {fmt(center)} at epoch {epoch}: expected a centre "
                f"within {BOX_LIMIT:g} of the origin; the fit diverged, lower training.lr",
                step=epoch, name="implicit_fn.sdf.center")

    return guard


# ----------------------------------------------------------------------------------------------
# visualisations of part 1
# ----------------------------------------------------------------------------------------------
def grid_image(image_hw) -> torch.Tensor:
    """(H, W, 3) the course's pixel-grid picture: ``((x, y) + 1) / 2.001`` in red/green, blue 0."""
    h, w = image_hw
    xy = ndc_grid((h, w), dtype=torch.float32)
    vis = (xy + 1) / 2.001
    return torch.cat([vis, torch.zeros_like(vis[:, :1])], -1).view(h, w, 3)


def rays_image(camera, image_hw) -> torch.Tensor:
    """(H, W, 3) ``|direction|`` of each pixel's ray."""
    h, w = image_hw
    return image_rays(camera, (h, w)).directions[0].abs().view(h, w, 3)


def depth_image(depth: torch.Tensor) -> np.ndarray:
    """(H, W, 4) uint8: ``depth / depth.max()`` through viridis, as ``plt.imsave`` writes it
    (min-max normalised, 256-entry lookup table, bytes)."""
    import matplotlib
    from matplotlib.colors import Normalize

    d = depth.detach().cpu().numpy()
    d = d / max(float(d.max()), 1e-12)
    return matplotlib.colormaps["viridis"](Normalize()(d), bytes=True)


def sample_points_image(points: torch.Tensor, image_size: int = 256) -> torch.Tensor:
    """(H, W, 3) the sample points of a camera's rays as a point cloud seen from the side
    (FoV camera at distance 10, elevation 10, azimuth 96; colour (0.7, 0.7, 1), black background)."""
    R, T = look_at_view_transform(10.0, 10.0, 96.0)
    cam = FoVPerspectiveCameras(R=R, T=T).to(points.device)
    cols = torch.tensor([0.7, 0.7, 1.0], device=points.device).expand_as(points)
    img = render_points(Pointclouds([points], [cols]), cam, image_size, radius=0.01, background=(0.0, 0.0, 0.0))
    return img[0, ..., :3].clamp(0, 1)


# ----------------------------------------------------------------------------------------------
# part 1: render an SDF volume
# ----------------------------------------------------------------------------------------------
def run_render(cfg: Mapping[str, Any], device: torch.device, out: Job) -> Dict[str, Any]:
    hw = wh_to_hw(cfg["data"]["image_size"])
    model = Model(cfg).to(device)
    cams = surround_cameras(**cfg["cameras"], device=device)
    t0 = time.perf_counter()
    res = render_images(model, cams, hw, keys=("color", "depth"))
    t_render = time.perf_counter() - t0
    name = cfg.get("gif_name", "part_1")
    written: List[Any] = save_gif(out / f"{name}.gif", res["color"])
    checks = turntable_checks(res["color"], written[0])
    vis = cfg.get("visualize") or {}
    if vis.get("enabled", False):
        # the course's pictures: camera 0 and camera ``depth_camera`` of the spec's 20-camera circle at
        # the spec's 256 x 256, whatever the size and frame count of the GIF
        vhw = wh_to_hw(vis.get("image_size") or cfg["data"]["image_size"])
        vcams = surround_cameras(**{**cfg["cameras"], "n_poses": int(vis.get("n_poses") or cfg["cameras"]["n_poses"])},
                                 device=device)
        cam0 = vcams[0]
        written.append(save_image(out / "grid.png", grid_image(vhw), truncate=True))
        written.append(save_image(out / "rays.png", rays_image(cam0, vhw).cpu(), truncate=True))
        bundle = model.sampler(image_rays(cam0, vhw).reshape(-1))
        step = max(1, int(vis.get("points_stride", 8)))
        keep = torch.arange(vhw[0] * vhw[1], device=device).view(vhw)[::step, ::step].reshape(-1)
        pts = bundle[keep].points.reshape(-1, 3)
        written.append(save_image(out / "sample_points.png", sample_points_image(pts).cpu(), truncate=True))
        k = int(vis.get("depth_camera", 2)) % len(vcams)
        vres = render_images(model, vcams[k], vhw, keys=("depth", "opacity"))
        written.append(save_image(out / "depth.png", depth_image(vres["depth"][0])))
        checks.update(analytic_volume_checks(cfg, vcams[k], vhw, vres))
        if vis.get("reference_checks", False):
            checks.update(reference_checks_part_1(model, cfg, out, device))
    metrics = {"frames": len(cams), "image_size": list(cfg["data"]["image_size"]), "render_time_s": t_render,
               "mean_color": float(res["color"].mean()), "checks": checks}
    finish(out, metrics, written)
    return metrics


def analytic_volume_checks(cfg: Mapping[str, Any], camera, hw, res: Mapping[str, torch.Tensor]) -> Dict[str, Any]:
    """Part 1's own checks on one camera, against the exact ray intersection of the box (slab
    test) or sphere; {} for other SDFs. The Laplace-CDF density reaches past the surface (a ray
    that passes within about beta of it gathers opacity over many samples), so the silhouette
    (opacity > 0.5) must cover the exact shape and stay within the shape grown by 2 beta."""
    from l3d.rays import ray_sphere_bounds

    fn = cfg["implicit_function"]
    sdf = fn["sdf"]
    val = lambda v: v["val"] if isinstance(v, Mapping) else v  # noqa: E731 ({val, opt} or a plain value)
    beta = float(torch.as_tensor(val(fn.get("beta", 0.05))).reshape(-1)[0])
    rays = image_rays(camera, hw).reshape(-1)
    o, d = rays.origins.double(), rays.directions.double()
    center = torch.as_tensor(val(sdf.get("center", [0.0, 0.0, 0.0])), dtype=torch.float64, device=o.device).reshape(3)
    if sdf["type"] == "box":
        sides = torch.as_tensor(val(sdf["side_lengths"]), dtype=torch.float64).reshape(-1).expand(3)
        t, hit = ray_box_hits(o, d, center, sides)
        _, grown = ray_box_hits(o, d, center, sides + 4 * beta)
        shape = "box"
    elif sdf["type"] == "sphere":
        radius = float(torch.as_tensor(val(sdf["radius"])).reshape(-1)[0])
        t, _, hit = ray_sphere_bounds(o - center, d, radius)
        _, _, grown = ray_sphere_bounds(o - center, d, radius + 2 * beta)
        shape = "sphere"
    else:
        return {}
    mask = res["opacity"][0].reshape(-1) > 0.5
    depth = res["depth"][0].reshape(-1).double()
    both = mask & hit
    err = float((depth[both] - t[both]).abs().mean()) if bool(both.any()) else float("inf")
    spacing = (cfg["sampler"]["max_depth"] - cfg["sampler"]["min_depth"]) / cfg["sampler"]["n_pts_per_ray"]
    share = lambda a, b: float((a & b).sum()) / max(1, int(b.sum()))  # noqa: E731 (share of b that is also a)
    where = f"the {hw[1]} x {hw[0]} pixels of the depth camera"
    return {
        "silhouette_recall": check(share(mask, hit), min=0.99,
                                   what=f"share of the rays meeting the exact {shape} (ray-{shape} intersection) that "
                                        f"render opaque (opacity > 0.5), over {where}"),
        "silhouette_precision": check(share(grown, mask), min=0.99,
                                      what=f"share of the opaque pixels whose ray meets the {shape} grown by 2 beta "
                                           f"({2 * beta:g}: the reach of the Laplace-CDF density), over {where}"),
        "depth_error": check(err, max=spacing,
                             what=f"mean |rendered depth - exact distance to the {shape}| where both see it "
                                  f"(threshold: one sample spacing, {spacing:.3f})"),
    }


def reference_checks_part_1(model, cfg: Mapping[str, Any], out: Job, device) -> Dict[str, Any]:
    """Golden checks against the course's reference images (only those present in the data root):
    the written grid/rays/depth PNGs, and frames 0, 7 and 13 of the spec's part_1.gif rendered at 256 x 256."""
    from PIL import Image

    checks: Dict[str, Any] = {}
    for png in ("grid", "rays", "depth"):
        ref = reference_image(f"{png}.png")
        if ref is None:
            continue
        with Image.open(out / f"{png}.png") as im:
            ours = np.asarray(im.convert("RGB")).astype(np.float64)
        checks[f"reference_{png}_png"] = check(mean_abs_levels(ours, ref), max=REFERENCE_MAX_LEVELS,
                                               what=f"mean |{png}.png - the course's reference| in 8-bit levels")
    if reference_path("part_1.gif") is not None:
        cams = surround_cameras(**{**cfg["cameras"], "n_poses": 20}, device=device)
        worst = 0.0
        for i in (0, 7, 13):
            ours = to_levels(render_images(model, cams[i], (256, 256))["color"][0])
            worst = max(worst, mean_abs_levels(ours, reference_frame("part_1.gif", i)))
        checks["reference_gif_frames"] = check(worst, max=REFERENCE_GIF_MAX_LEVELS,
                                               what="largest mean |frame - reference frame| in 8-bit levels over "
                                                    "frames 0, 7, 13 of part_1.gif (20 cameras, 256 x 256)")
    return checks


# ----------------------------------------------------------------------------------------------
# part 2: optimise the box
# ----------------------------------------------------------------------------------------------
def _box_images(cfg: Mapping[str, Any], cams, device) -> torch.Tensor:
    """The four box_i.npy renders, or (when absent) the same renders made here with the Q1 pipeline."""
    images = load_box_images(len(cams))
    if images is not None:
        return images.to(device)
    print("box_{0..3}.npy not found under the data root; rendering them with the Q1 pipeline "
          "(box centre (0.25, 0.25, 0), sides (2, 1.5, 1.5); `python -m l3d.data download a3` for the course files)",
          file=sys.stderr)
    true = {"implicit_function": {"type": "sdf_volume",
                                  "sdf": {"type": "box", "center": [0.25, 0.25, 0.0], "side_lengths": [2.0, 1.5, 1.5]},
                                  "feature": {"rainbow": True}, "alpha": 1.0, "beta": 0.05},
            "sampler": {"type": "stratified", "n_pts_per_ray": 64, "min_depth": 0.0, "max_depth": 5.0},
            "renderer": {"type": "volume", "chunk_size": 32768}}
    return render_images(Model(true).to(device), cams, (256, 256))["color"]


def run_train_box(cfg: Mapping[str, Any], device: torch.device, out: Job) -> Dict[str, Any]:
    hw = wh_to_hw(cfg["data"]["image_size"])
    tcfg = cfg["training"]
    dcfg = cfg["data"]
    cams = look_at_cameras(dcfg.get("eyes", BOX_EYES), dcfg.get("focal_length", 1.0), up=(0.0, 1.0, 0.0), device=device)
    from_files = load_box_images(len(cams)) is not None
    images = _box_images(cfg, cams, device)  # (4, 256, 256, 3)
    model = Model(cfg).to(device)
    grid = ndc_grid(hw, device=device)  # (HW, 2)
    gt = lookup_pixels(images, grid, tcfg.get("pixel_lookup", "grid_sample"))  # (C, HW, 3)
    rays = image_rays(cams, hw)  # (C, HW)
    written: List[Any] = []
    before = render_images(model, cams, hw)["color"]
    written.append(save_image(out / "part_2_before_training.png", torch.cat(list(before.cpu()), 1), truncate=True))
    optim = torch.optim.Adam(model.parameters(), lr=float(tcfg["lr"]))
    bs = min(int(tcfg["batch_size"]), hw[0] * hw[1])
    gen = torch.Generator(device="cpu").manual_seed(int(cfg.get("seed", 0)))

    def epoch_fn(epoch: int) -> Dict[str, float]:
        losses = []
        for c in torch.randperm(len(cams), generator=gen).tolist():  # one image per step (course)
            idx = torch.randperm(hw[0] * hw[1], generator=gen)[:bs].to(device)
            res = model(rays[c][idx])
            loss = F.mse_loss(res["color"], gt[c, idx])
            optim.zero_grad(set_to_none=True)
            loss.backward()
            optim.step()
            losses.append(loss.item())
        return {"loss": float(np.mean(losses))}

    sched = torch.optim.lr_scheduler.StepLR(optim, int(tcfg.get("lr_scheduler_step_size") or 10 ** 9),
                                            float(tcfg.get("lr_scheduler_gamma", 1.0)))
    sdf = model.implicit_fn.sdf
    info = train_loop(out, model, optim, sched, tcfg, cfg, epoch_fn, desc="train box", device=device,
                      guard=box_guard(sdf))
    center = [round(v, 6) for v in sdf.center.detach().reshape(-1).tolist()]
    sides = [round(v, 6) for v in sdf.side_lengths.detach().reshape(-1).tolist()]
    fmt = lambda vals: "(" + ", ".join(f"{round(v, 2) + 0.0:.2f}" for v in vals) + ")"  # noqa: E731 (no "-0.00")
    print(f"Box center: {fmt(center)}")
    print(f"Box side lengths: {fmt(sides)}")
    after = render_images(model, cams, hw)["color"]
    written.append(save_image(out / "part_2_after_training.png", torch.cat(list(after.cpu()), 1), truncate=True))
    gcams = surround_cameras(**cfg["gif"], device=device)
    frames = render_images(model, gcams, hw)["color"]
    written += save_gif(out / "part_2.gif", frames)
    c_err = max(abs(a - b) for a, b in zip(center, BOX_TRUE_CENTER))
    s_err = max(abs(a - b) for a, b in zip(sides, BOX_TRUE_SIDES))
    checks = {
        "center_error": check(c_err, max=BOX_MAX_ERROR, what="max abs error of the recovered box centre vs "
                                                             "(0.25, 0.25, 0) (scene units)"),
        "sides_error": check(s_err, max=BOX_MAX_ERROR, what="max abs error of the recovered side lengths vs "
                                                            "(2, 1.5, 1.5) (scene units)"),
        **turntable_checks(frames, written[-2]),
    }
    metrics = {"box_center": center, "box_side_lengths": sides, "final_loss": info["last"].get("loss"),
               "epochs": info["end_epoch"], "start_epoch": info["start_epoch"], "train_time_s": info["time_s"],
               "psnr_after": psnr(after, gt.view(len(cams), *hw, 3)), "data": box_data_label(from_files),
               "checks": checks}
    finish(out, metrics, written)
    return metrics


# ----------------------------------------------------------------------------------------------
# parts 3 and 4: NeRF
# ----------------------------------------------------------------------------------------------
def load_scene(cfg: Mapping[str, Any]):
    d = cfg["data"]
    if d.get("format") in SCENE_FORMATS:  # a scene of the user's: data.format=blender|colmap, data.path=<folder>
        return load_scene_folder(d.get("path"), d["format"], wh_to_hw(d["image_size"]), d.get("background"),
                                 d.get("normalize", "auto"))
    return load_nerf_scene(
        d.get("dataset_name", "lego"), wh_to_hw(d["image_size"]), d.get("source", "auto"), d.get("cache_dir"),
        n_train=int(d.get("n_train_views", 100)), n_val=int(d.get("n_val_views", 10)),
        n_test=int(d.get("n_test_views", 20)), supersample=int(d.get("supersample", 3)),
    )


def train_views(scene, max_views) -> tuple:
    """Training images/cameras; ``max_views`` keeps that many, evenly spread over the split."""
    images, cams = scene.subset("train")
    if max_views and 0 < int(max_views) < len(images):
        keep = torch.linspace(0, len(images) - 1, int(max_views)).round().long()
        images, cams = images[keep], cams[keep]
    return images, cams


class RayBatcher:
    """Random training rays drawn uniformly from all pixels of all training views.

    ``lookup``: "exact" (the pixel's own colour), "bilinear" or "grid_sample" (spec convention 9);
    see :func:`a3_volume_surface.common.lookup_pixels`.
    """

    def __init__(self, images: torch.Tensor, cams, lookup: str, seed: int):
        n, h, w, _ = images.shape
        self.cams, self.hw = cams, (h, w)
        self.grid = ndc_grid((h, w), device=images.device)
        self.gt = lookup_pixels(images, self.grid, lookup)  # (N, HW, 3)
        self.gen = torch.Generator(device="cpu").manual_seed(seed)

    def __call__(self, batch_size: int):
        n, hw = self.gt.shape[0], self.gt.shape[1]
        img = torch.randint(n, (batch_size,), generator=self.gen).to(self.gt.device)
        pix = torch.randint(hw, (batch_size,), generator=self.gen).to(self.gt.device)
        bundle = rays_from_ndc(self.cams[img], self.grid[pix][:, None]).reshape(-1)
        return bundle, self.gt[img, pix]


def evaluate_views(model, images: torch.Tensor, cams, n_views: int = -1) -> Dict[str, Any]:
    """PSNR of rendered held-out views (all of them, or the first ``n_views``)."""
    if n_views is not None and 0 < int(n_views) < len(images):
        images, cams = images[: int(n_views)], cams[: int(n_views)]
    t0 = time.perf_counter()
    pred = render_images(model, cams, images.shape[1:3])["color"]
    per = [psnr(p, g) for p, g in zip(pred, images)]
    return {"psnr": float(np.mean(per)), "psnr_per_view": per, "n_views": len(per),
            "render_s_per_view": (time.perf_counter() - t0) / len(per), "pred": pred}


def save_test_views(path: Path, ev: Mapping[str, Any], test_images: torch.Tensor, n: int = 3) -> Path:
    """The first ``n`` held-out views: prediction | ground truth, each row labelled with its PSNR."""
    k = min(n, ev["n_views"])
    labels = [f"view {i}  {p:.1f} dB" for i, p in enumerate(ev["psnr_per_view"][:k])]
    panel = comparison_panel([ev["pred"][:k].cpu(), test_images[:k].cpu()], ("prediction", "ground truth"), labels)
    return save_image(path, panel)


def run_train_nerf(cfg: Mapping[str, Any], device: torch.device, out: Job) -> Dict[str, Any]:
    """Train a NeRF; under torchrun data-parallel over the rays of each global batch (see
    :mod:`a3_volume_surface.common`), rank 0 rendering and writing the results."""
    tcfg = cfg["training"]
    dist = distributed.current()
    with dist.main_first():  # rank 0 renders and caches a built-in scene once
        scene = load_scene(cfg)
    images, cams = train_views(scene, cfg["data"].get("max_train_views"))
    images, cams = images.to(device), cams.to(device)
    test_images, test_cams = scene.subset("test")
    model = Model(cfg).to(device)
    if tcfg.get("compile", False):
        model.implicit_fn = torch.compile(model.implicit_fn)
    optim = torch.optim.Adam(model.param_groups(tcfg["lr"], tcfg.get("table_lr"), tcfg.get("table_eps", 1e-15)),
                             lr=float(tcfg["lr"]))
    sched = torch.optim.lr_scheduler.StepLR(optim, int(tcfg.get("lr_scheduler_step_size", 50)),
                                            float(tcfg.get("lr_scheduler_gamma", 0.8)))
    batcher = RayBatcher(images, cams, tcfg.get("pixel_lookup", "exact"), int(cfg.get("seed", 0)))
    steps = int(tcfg.get("steps_per_epoch") or len(images))
    bs = int(tcfg["batch_size"])
    mine = local_rows(bs, device)  # this rank's rows of every global batch (all of them in one process)
    share = len(mine) / bs
    occupancy = getattr(model.sampler, "occupancy", None) is not None
    coarse_w = float(tcfg.get("coarse_loss_weight", 1.0))
    gif_cfg = cfg["gif"]
    hw = wh_to_hw(cfg["data"]["image_size"])
    gif_name = cfg.get("gif_name", "part_3")
    written: List[Any] = []

    warmup = int(tcfg.get("lr_warmup_steps") or 0)
    step_size, gamma = int(tcfg.get("lr_scheduler_step_size", 50)), float(tcfg.get("lr_scheduler_gamma", 0.8))

    def set_lr(epoch: int, factor: float) -> None:
        for g in optim.param_groups:  # the StepLR value of this epoch, times the warm-up factor
            g["lr"] = g["initial_lr"] * gamma ** (epoch // step_size) * factor

    def epoch_fn(epoch: int) -> Dict[str, float]:
        tot, n = 0.0, 0
        for i in range(steps):
            step = epoch * steps + i
            if step <= warmup and warmup > 0:  # linear warm-up (guards against the density dying early)
                set_lr(epoch, min(1.0, (step + 1) / warmup))
            bundle, rgb = batcher(bs)  # the global batch, the same on every rank
            if dist.enabled:
                bundle, rgb = bundle[mine], rgb[mine]
            res = model(bundle)
            loss = F.mse_loss(res["color"], rgb)
            full = loss + coarse_w * F.mse_loss(res["color_coarse"], rgb) if "color_coarse" in res else loss
            optim.zero_grad(set_to_none=True)
            dist.scale_loss(full, len(mine), bs).backward()
            average_gradients(model)
            optim.step()
            model.after_step()
            if occupancy:
                broadcast_state(model.sampler, buffers_only=True)  # rank 0's occupancy grid everywhere
            tot += loss.item() * share if dist.enabled else loss.item()
            n += 1
        if dist.enabled:
            tot = dist.sum([tot])[0]  # the global batches' mean squared error
        mse = tot / n
        return {"loss": mse, "train_psnr": 10 * math.log10(1 / max(mse, 1e-12))}

    def render_gif():
        gcams = surround_cameras(**gif_cfg, device=device)
        frames = render_images(model, gcams, hw)["color"]
        return save_gif(out / f"{gif_name}.gif", frames), frames

    interval = int(tcfg.get("render_interval", 0) or 0)

    def after_epoch(epoch: int):
        if interval > 0 and (epoch + 1) % interval == 0 and epoch + 1 < int(tcfg["num_epochs"]):
            render_gif()

    monitor = LiveMonitor(cfg, model, lambda c, size: render_images(model, c, size)["color"], cams, images,
                          test_cams[:1].to(device), test_images[0]) if dist.is_main else None
    try:
        info = train_loop(out, model, optim, sched, tcfg, cfg, epoch_fn, after_epoch, desc="train nerf", device=device,
                          monitor=monitor)
    finally:
        live = monitor.close() if monitor is not None else {}
    if not end_of_training():  # the other ranks are done; rank 0 evaluates, renders and writes
        return {"processes": info["processes"], "epochs": info["end_epoch"], "start_epoch": info["start_epoch"]}
    ev = evaluate_views(model, test_images.to(device), test_cams.to(device), tcfg.get("eval_views", -1))
    written.append(save_test_views(out / f"{gif_name}_test_views.png", ev, test_images))
    t0 = time.perf_counter()
    gif, frames = render_gif()
    written += gif
    checks = {"test_psnr": check(ev["psnr"], min=NERF_MIN_PSNR,
                                 what=f"mean PSNR of the {ev['n_views']} held-out test views (dB)"),
              **turntable_checks(frames, gif[0])}
    metrics = {
        "data": scene_data_label(scene.source, cfg["data"].get("dataset_name", "lego")), "checks": checks,
        "scene": scene.source, **({"scene_info": scene.scene_info} if scene.scene_info else {}),
        "image_size": list(cfg["data"]["image_size"]), "train_views": len(images),
        "test_psnr": ev["psnr"], "test_views": ev["n_views"], "final_train_loss": info["last"].get("loss"),
        "final_train_psnr": info["last"].get("train_psnr"), "epochs": info["end_epoch"],
        "start_epoch": info["start_epoch"], "steps": (info["end_epoch"] - info["start_epoch"]) * steps,
        "train_time_s": info["time_s"], "train_cpu_time_s": info["cpu_time_s"], "out_of_time": info["out_of_time"],
        "render_s_per_view": ev["render_s_per_view"],
        "gif_time_s": time.perf_counter() - t0, **live, "processes": info["processes"],
    }
    occ = getattr(model.sampler, "occupancy", None)
    if occ is not None:
        metrics["occupied_fraction"] = occ.occupancy_fraction
    written += export_after_training(model, cfg, out, device, scene.normalization)
    finish(out, metrics, written)
    return metrics
