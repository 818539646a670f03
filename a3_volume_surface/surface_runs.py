"""The three modes of ``surface_rendering_main``: render (parts 5, 8.1), train_points (part 6),
train_images (parts 7, 8.2, 8.3).
"""

from __future__ import annotations

import math
import time
from typing import Any, Dict, List, Mapping

import torch
import torch.nn.functional as F

from l3d import distributed
from l3d.checks import check
from l3d.rays import image_rays

from .cameras import surround_cameras
from .common import (
    Job, LiveMonitor, average_gradients, broadcast_state, end_of_training, finish, local_rows, save_gif, train_loop,
    wh_to_hw,
)
from .export import export_after_training
from .data import builtin_scene_mesh, load_bunny, points_data_label, scene_data_label
from .geometry import implicit_to_mesh, mesh_chamfer, render_geometry, render_point_cloud
from .losses import eikonal_loss, inter_loss, point_loss, pretrain_sphere, random_points
from .measure import (
    dense_march, iou, longest_side, psnr_images, reference_frame, reference_path, to_levels, turntable_checks,
)
from .model import Model, render_images
from .targets import (
    MAX_REL_CHAMFER, MIN_PRIMITIVES, REFERENCE_SILHOUETTE_MAX_PIXELS, SILHOUETTE_MIN_IOU, SURFACE_MIN_PSNR,
)
from .volume_runs import RayBatcher, evaluate_views, load_scene, save_test_views, train_views

__all__ = ["run_render", "run_train_points", "run_train_images"]


def _geometry(model, cfg: Mapping[str, Any], device) -> Any:
    g = cfg.get("geometry") or {}
    return implicit_to_mesh(model.implicit_fn.get_distance, float(g.get("scale", 3.0)), int(g.get("grid_size", 128)),
                            float(g.get("thresh", 0.0)), device=device)


# ----------------------------------------------------------------------------------------------
# part 5 / 8.1: sphere tracing of analytic SDFs
# ----------------------------------------------------------------------------------------------
def run_render(cfg: Mapping[str, Any], device: torch.device, out: Job) -> Dict[str, Any]:
    hw = wh_to_hw(cfg["data"]["image_size"])
    model = Model(cfg).to(device)
    cams = surround_cameras(**cfg["cameras"], device=device)
    t0 = time.perf_counter()
    res = render_images(model, cams, hw, keys=("color", "mask", "depth"))
    t = time.perf_counter() - t0
    name = cfg.get("gif_name", "part_5")
    written = save_gif(out / f"{name}.gif", res["color"])
    n_prims = len(getattr(model.implicit_fn.sdf, "parts", [None]))
    checks = {**tracing_checks(model, cams, hw, res, cfg.get("check_bound_radius")),
              **turntable_checks(res["color"], written[0])}
    if n_prims > 1:
        checks["primitives"] = check(n_prims, min=MIN_PRIMITIVES, what="SDF primitives in the scene (their minimum "
                                                                       "is the scene's SDF)")
    if cfg.get("reference_checks", False):
        checks.update(reference_checks_part_5(model, cfg, device))
    metrics = {"frames": len(cams), "image_size": list(cfg["data"]["image_size"]), "render_time_s": t,
               "hit_fraction": float(res["mask"].float().mean()), "primitives": n_prims, "checks": checks}
    finish(out, metrics, written)
    return metrics


def tracing_checks(model, cams, hw, res: Mapping[str, torch.Tensor], bound_radius=None) -> Dict[str, Any]:
    """The sphere tracer against a dense ray march of the same SDF (steps of 0.01 + bisection, see
    :func:`a3_volume_surface.measure.dense_march`; only inside ``bound_radius`` when given) on two
    frames of the turntable (the first and the middle one): hit precision and silhouette IoU,
    mean depth difference on common hits, and PSNR of the frames against the same shading
    applied at the dense march's hits."""
    r = model.renderer
    fn = model.implicit_fn
    idx = sorted({0, len(cams) // 2})
    masks, ref_masks, errs, preds, refs = [], [], [], [], []
    for i in idx:
        rays = image_rays(cams[i], hw).reshape(-1)
        t_ref, hit_ref = dense_march(fn.get_distance, rays.origins, rays.directions, r.near, r.far, 0.01,
                                     bound_radius)
        mask = res["mask"][i].reshape(-1)
        both = mask & hit_ref
        errs.append((res["depth"][i].reshape(-1) - t_ref)[both].abs())
        masks.append(mask)
        ref_masks.append(hit_ref)
        ref_img = r.shade(fn, rays.origins + t_ref[:, None] * rays.directions, hit_ref)
        preds.append(res["color"][i].reshape(-1, 3))
        refs.append(ref_img)
    err = torch.cat(errs)
    mask, ref_mask = torch.cat(masks), torch.cat(ref_masks)
    return {
        "hit_precision": check(float((mask & ref_mask).sum()) / max(1, int(mask.sum())), min=0.99,
                               what="share of the sphere-traced hits that a dense ray march (steps of 0.01 + "
                                    f"bisection) also hits, frames {', '.join(map(str, idx))}"),
        "silhouette_iou": check(iou(mask, ref_mask), min=SILHOUETTE_MIN_IOU,
                                what="sphere-traced hits vs the dense ray march, IoU (a few grazing rays that have not "
                                     "converged after max_iters steps count as misses, as in the spec)"),
        "depth_error": check(float(err.mean()) if len(err) else float("inf"), max=0.01,
                             what="mean |sphere-traced distance - dense-march distance| on rays both hit "
                                  "(scene units)"),
        "psnr_vs_dense_march": check(psnr_images(torch.cat(preds), torch.cat(refs)), min=SURFACE_MIN_PSNR,
                                     what="PSNR (dB) of the frames vs the same shading at the dense march's hits"),
    }


def reference_checks_part_5(model, cfg: Mapping[str, Any], device) -> Dict[str, Any]:
    """Frames 0 and 9 of the spec's part_5.gif (20 cameras, 256 x 256) against the course's
    reference GIF: silhouette pixels that differ (grazing rays decide a few)."""
    if reference_path("part_5.gif") is None:
        return {}
    cams = surround_cameras(**{**cfg["cameras"], "n_poses": 20}, device=device)
    worst = 0
    for i in (0, 9):
        ours = to_levels(render_images(model, cams[i], (256, 256))["color"][0])
        ref = reference_frame("part_5.gif", i)
        worst = max(worst, int(((ours.sum(-1) > 0) != (ref.sum(-1) > 0)).sum()))
    return {"reference_silhouette_pixels": check(worst, max=REFERENCE_SILHOUETTE_MAX_PIXELS,
                                                 what="most silhouette pixels (of 65536) that differ from the course's "
                                                      "part_5.gif, frames 0 and 9 at 256 x 256")}


# ----------------------------------------------------------------------------------------------
# part 6: neural SDF from a point cloud
# ----------------------------------------------------------------------------------------------
def run_train_points(cfg: Mapping[str, Any], device: torch.device, out: Job) -> Dict[str, Any]:
    tcfg, dcfg = cfg["training"], cfg["data"]
    hw = wh_to_hw(dcfg["image_size"])
    points, source = load_bunny(dcfg.get("point_cloud_path"))
    points = points[:: int(dcfg.get("subsample", 2))]
    points = (points - points.mean(0, keepdim=True)).to(device)  # centred (spec)
    model = Model(cfg).to(device)
    fn = model.implicit_fn
    gen = torch.Generator().manual_seed(int(cfg.get("seed", 0)))
    bounds = tcfg["bounds"]
    bs = int(tcfg["batch_size"])
    pre = float("nan")
    if not out.resuming:
        pre = pretrain_sphere(fn, int(tcfg.get("pretrain_iters", 0)), bs, float(tcfg["lr"]), bounds, 1.0, gen, device)
    optim = torch.optim.Adam(model.parameters(), lr=float(tcfg["lr"]))
    sched = torch.optim.lr_scheduler.StepLR(optim, int(tcfg.get("lr_scheduler_step_size", 10 ** 9)),
                                            float(tcfg.get("lr_scheduler_gamma", 1.0)))
    steps = int(tcfg.get("steps_per_epoch") or 1)
    wi, we = float(tcfg["inter_weight"]), float(tcfg["eikonal_weight"])

    def epoch_fn(epoch: int) -> Dict[str, float]:
        acc: Dict[str, float] = {}
        for _ in range(steps):
            idx = torch.randperm(len(points), generator=gen)[:bs].to(device)
            d, g = fn.get_distance_and_gradient(points[idx])
            rnd = random_points(bs, bounds, gen, device)
            d_r, g_r = fn.get_distance_and_gradient(rnd)
            lp, li, le = point_loss(d), inter_loss(d_r), eikonal_loss(torch.cat([g, g_r], 0))
            loss = lp + wi * li + we * le
            optim.zero_grad(set_to_none=True)
            loss.backward()
            optim.step()
            for k, v in (("loss", loss), ("loss/point", lp), ("loss/inter", li), ("loss/eikonal", le)):
                acc[k] = acc.get(k, 0.0) + v.item() / steps
        return acc

    info = train_loop(out, model, optim, sched, tcfg, cfg, epoch_fn, desc="train points", device=device)
    cams = surround_cameras(**cfg["gif"], device=device)
    written: List[Any] = []
    input_frames = render_point_cloud(points, cams, hw)
    written += save_gif(out / "part_6_input.gif", input_frames)
    mesh = _geometry(model, cfg, device)
    frames = render_geometry(mesh, cams, hw)
    written += save_gif(out / "part_6.gif", frames)
    dist = mesh_chamfer(mesh, points)
    size = longest_side(points)
    what = "the course's bunny" if source.startswith("file:") else "the procedural point set"
    checks = {
        "chamfer": check(dist["chamfer_l1"] / size, max=MAX_REL_CHAMFER,
                         what="mean of the two mean nearest-neighbour distances between 20k points on the "
                              f"marching-cubes mesh and the input points, over the longest side of {what}'s "
                              f"bounding box ({size:.2f})"),
        **turntable_checks(frames, written[-2]),
        **turntable_checks(input_frames, written[0], prefix="input_"),
    }
    metrics = {"points": source, "data": points_data_label(source), "n_points": len(points), "pretrain_loss": pre,
               "epochs": info["end_epoch"], "start_epoch": info["start_epoch"], "train_time_s": info["time_s"],
               "train_cpu_time_s": info["cpu_time_s"], **{k.replace("/", "_"): v for k, v in info["last"].items()},
               "mesh_faces": 0 if mesh is None else int(mesh.num_faces_per_mesh()[0]),
               "mesh_to_points": dist, "object_size": size, "checks": checks}
    written += export_after_training(model, cfg, out, device)
    finish(out, metrics, written)
    return metrics


# ----------------------------------------------------------------------------------------------
# parts 7, 8.2, 8.3: VolSDF / NeuS from images
# ----------------------------------------------------------------------------------------------
def run_train_images(cfg: Mapping[str, Any], device: torch.device, out: Job) -> Dict[str, Any]:
    tcfg = cfg["training"]
    hw = wh_to_hw(cfg["data"]["image_size"])
    dist = distributed.current()
    with dist.main_first():  # rank 0 renders and caches a built-in scene once
        scene = load_scene(cfg)
    images, cams = train_views(scene, cfg["data"].get("max_train_views"))
    images, cams = images.to(device), cams.to(device)
    test_images, test_cams = scene.subset("test")
    model = Model(cfg).to(device)
    fn = model.implicit_fn
    gen = torch.Generator().manual_seed(int(cfg.get("seed", 0)))
    bounds = tcfg["bounds"]
    bs = int(tcfg["batch_size"])
    pre = float("nan")
    if not out.resuming:
        pre = pretrain_sphere(fn, int(tcfg.get("pretrain_iters", 0)), bs, float(tcfg["lr"]), bounds, 1.0, gen, device)
    optim = torch.optim.Adam(model.param_groups(tcfg["lr"], tcfg.get("table_lr"), tcfg.get("table_eps", 1e-15)),
                             lr=float(tcfg["lr"]))
    sched = torch.optim.lr_scheduler.StepLR(optim, int(tcfg.get("lr_scheduler_step_size", 50)),
                                            float(tcfg.get("lr_scheduler_gamma", 0.8)))
    batcher = RayBatcher(images, cams, tcfg.get("pixel_lookup", "exact"), int(cfg.get("seed", 0)))
    steps = int(tcfg.get("steps_per_epoch") or len(images))
    wi, we = float(tcfg["inter_weight"]), float(tcfg["eikonal_weight"])
    n_geo = int(tcfg.get("eikonal_points") or bs)
    # data-parallel under torchrun: each rank its rows of the global rays and of the random points
    mine, mine_geo = local_rows(bs, device), local_rows(n_geo, device, "training.eikonal_points")
    occupancy = getattr(model.sampler, "occupancy", None) is not None

    def epoch_fn(epoch: int) -> Dict[str, float]:
        acc: Dict[str, float] = {}
        for _ in range(steps):
            bundle, rgb = batcher(bs)  # the global batch, the same on every rank
            rnd = random_points(n_geo, bounds, gen, device)
            if dist.enabled:
                bundle, rgb, rnd = bundle[mine], rgb[mine], rnd[mine_geo]
            res = model(bundle)
            lc = F.mse_loss(res["color"], rgb)
            d_r, g_r = fn.get_distance_and_gradient(rnd)
            li, le = inter_loss(d_r), eikonal_loss(g_r)
            loss = lc + wi * li + we * le
            optim.zero_grad(set_to_none=True)
            if dist.enabled:  # each mean rescaled by its share of the global rows
                (dist.scale_loss(lc, len(mine), bs) + wi * dist.scale_loss(li, len(mine_geo), n_geo)
                 + we * dist.scale_loss(le, len(mine_geo), n_geo)).backward()
                average_gradients(model)
            else:
                loss.backward()
            optim.step()
            model.after_step()
            if occupancy:
                broadcast_state(model.sampler, buffers_only=True)  # rank 0's occupancy grid everywhere
            if dist.enabled:
                for k, v, w in (("loss/color", lc, len(mine) / bs), ("loss/inter", li, len(mine_geo) / n_geo),
                                ("loss/eikonal", le, len(mine_geo) / n_geo)):
                    acc[k] = acc.get(k, 0.0) + v.item() * w / steps
            else:
                for k, v in (("loss", loss), ("loss/color", lc), ("loss/inter", li), ("loss/eikonal", le)):
                    acc[k] = acc.get(k, 0.0) + v.item() / steps
        if dist.enabled:  # the global batches' losses
            keys = ("loss/color", "loss/inter", "loss/eikonal")
            acc = dict(zip(keys, dist.sum([acc[k] for k in keys])))
            acc = {"loss": acc["loss/color"] + wi * acc["loss/inter"] + we * acc["loss/eikonal"], **acc}
        acc["train_psnr"] = 10 * math.log10(1 / max(acc["loss/color"], 1e-12))
        return acc

    monitor = LiveMonitor(cfg, model, lambda c, size: render_images(model, c, size)["color"], cams, images,
                          test_cams[:1].to(device), test_images[0]) if dist.is_main else None
    try:
        info = train_loop(out, model, optim, sched, tcfg, cfg, epoch_fn, desc="train surface", device=device,
                          monitor=monitor)
    finally:
        live = monitor.close() if monitor is not None else {}
    if not end_of_training():  # the other ranks are done; rank 0 evaluates, renders and writes
        return {"processes": info["processes"], "epochs": info["end_epoch"], "start_epoch": info["start_epoch"]}
    ev = evaluate_views(model, test_images.to(device), test_cams.to(device), tcfg.get("eval_views", -1))
    name = cfg.get("gif_name", "part_7")
    written: List[Any] = [save_test_views(out / f"{name}_test_views.png", ev, test_images)]
    gcams = surround_cameras(**cfg["gif"], device=device)
    frames = render_images(model, gcams, hw)["color"]
    written += save_gif(out / f"{name}.gif", frames)
    mesh = _geometry(model, cfg, device)
    geo_frames = render_geometry(mesh, gcams, hw)
    written += save_gif(out / f"{name}_geometry.gif", geo_frames)
    checks: Dict[str, Any] = {
        "test_psnr": check(ev["psnr"], min=SURFACE_MIN_PSNR,
                           what=f"mean PSNR of the {ev['n_views']} held-out test views (dB)"),
        **turntable_checks(frames, written[1]),
        **turntable_checks(geo_frames, written[3], prefix="geometry_"),
    }
    metrics: Dict[str, Any] = {
        "data": scene_data_label(scene.source, cfg["data"].get("dataset_name", "lego")), "checks": checks,
        "scene": scene.source, **({"scene_info": scene.scene_info} if scene.scene_info else {}),
        "image_size": list(cfg["data"]["image_size"]), "train_views": len(images),
        "density": cfg["renderer"].get("density", "volsdf"), "alpha": cfg["renderer"].get("alpha"),
        "beta": cfg["renderer"].get("beta"), "s": cfg["renderer"].get("s"),
        "pretrain_loss": pre, "test_psnr": ev["psnr"], "test_views": ev["n_views"],
        "render_s_per_view": ev["render_s_per_view"], "steps": (info["end_epoch"] - info["start_epoch"]) * steps,
        "epochs": info["end_epoch"], "start_epoch": info["start_epoch"], "train_time_s": info["time_s"],
        "train_cpu_time_s": info["cpu_time_s"], "out_of_time": info["out_of_time"], **live,
        "processes": info["processes"], **{k.replace("/", "_"): v for k, v in info["last"].items()},
        "mesh_faces": 0 if mesh is None else int(mesh.num_faces_per_mesh()[0]),
    }
    occ = getattr(model.sampler, "occupancy", None)
    if occ is not None:
        metrics["occupied_fraction"] = occ.occupancy_fraction
    if scene.source.startswith("builtin:"):  # the built-in scenes know their true geometry
        true_mesh, _ = builtin_scene_mesh(scene.source.split(":", 1)[1])
        from l3d.ops import sample_points_from_meshes

        g = torch.Generator().manual_seed(1)
        true_pts = sample_points_from_meshes(true_mesh, 20000, generator=g)[0].to(device)
        dist = mesh_chamfer(mesh, true_pts)
        size = longest_side(true_mesh.verts_packed())
        metrics["geometry_vs_true_mesh"] = dist
        metrics["object_size"] = size
        checks["geometry_chamfer"] = check(
            dist["chamfer_l1"] / size, max=MAX_REL_CHAMFER,
            what="mean of the two mean nearest-neighbour distances between 20k points on the marching-cubes mesh "
                 f"and on the true mesh, over the longest side of the true object's bounding box ({size:.2f})")
    else:  # the course's scene: no true mesh to compare with, but the geometry must not be empty
        checks["geometry_faces"] = check(metrics["mesh_faces"], min=100,
                                         what="faces of the marching-cubes mesh of the SDF's zero level set")
    written += export_after_training(model, cfg, out, device, scene.normalization)
    finish(out, metrics, written)
    return metrics
