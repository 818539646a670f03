"""The three modes of ``surface_rendering_main``: render (parts 5, 8.1), train_points (part 6),
train_images (parts 7, 8.2, 8.3).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Dict, List, Mapping

import torch
import torch.nn.functional as F

from l3d.io import save_image

from .cameras import surround_cameras
from .common import finish, save_gif, train_loop, wh_to_hw
from .data import builtin_scene_mesh, load_bunny
from .geometry import implicit_to_mesh, mesh_chamfer, render_geometry, render_point_cloud
from .losses import eikonal_loss, inter_loss, point_loss, pretrain_sphere, random_points
from .model import Model, render_images
from .volume_runs import RayBatcher, evaluate_views, load_scene, train_views

__all__ = ["run_render", "run_train_points", "run_train_images"]


def _has_checkpoint(out: Path, tcfg: Mapping[str, Any]) -> bool:
    from l3d.train import find_latest_checkpoint

    return bool(tcfg.get("resume", False)) and find_latest_checkpoint(out / "checkpoints") is not None


def _geometry(model, cfg: Mapping[str, Any], device) -> Any:
    g = cfg.get("geometry") or {}
    return implicit_to_mesh(model.implicit_fn.get_distance, float(g.get("scale", 3.0)), int(g.get("grid_size", 128)),
                            float(g.get("thresh", 0.0)), device=device)


# ----------------------------------------------------------------------------------------------
# part 5 / 8.1: sphere tracing of analytic SDFs
# ----------------------------------------------------------------------------------------------
def run_render(cfg: Mapping[str, Any], device: torch.device, out: Path) -> Dict[str, Any]:
    hw = wh_to_hw(cfg["data"]["image_size"])
    model = Model(cfg).to(device)
    cams = surround_cameras(**cfg["cameras"], device=device)
    t0 = time.perf_counter()
    res = render_images(model, cams, hw, keys=("color", "mask"))
    t = time.perf_counter() - t0
    name = cfg.get("gif_name", "part_5")
    written = save_gif(out / f"{name}.gif", res["color"])
    n_prims = len(getattr(model.implicit_fn.sdf, "parts", [None]))
    metrics = {"frames": len(cams), "image_size": list(cfg["data"]["image_size"]), "render_time_s": t,
               "hit_fraction": float(res["mask"].float().mean()), "primitives": n_prims}
    finish(out, metrics, written)
    return metrics


# ----------------------------------------------------------------------------------------------
# part 6: neural SDF from a point cloud
# ----------------------------------------------------------------------------------------------
def run_train_points(cfg: Mapping[str, Any], device: torch.device, out: Path) -> Dict[str, Any]:
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
    if not _has_checkpoint(out, tcfg):
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
    written += save_gif(out / "part_6_input.gif", render_point_cloud(points, cams, hw))
    mesh = _geometry(model, cfg, device)
    written += save_gif(out / "part_6.gif", render_geometry(mesh, cams, hw))
    dist = mesh_chamfer(mesh, points)
    metrics = {"points": source, "n_points": len(points), "pretrain_loss": pre, "epochs": info["end_epoch"],
               "start_epoch": info["start_epoch"], "train_time_s": info["time_s"],
               **{k.replace("/", "_"): v for k, v in info["last"].items()},
               "mesh_faces": 0 if mesh is None else int(mesh.num_faces_per_mesh()[0]),
               "mesh_to_points": dist}
    finish(out, metrics, written)
    return metrics


# ----------------------------------------------------------------------------------------------
# parts 7, 8.2, 8.3: VolSDF / NeuS from images
# ----------------------------------------------------------------------------------------------
def run_train_images(cfg: Mapping[str, Any], device: torch.device, out: Path) -> Dict[str, Any]:
    tcfg = cfg["training"]
    hw = wh_to_hw(cfg["data"]["image_size"])
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
    if not _has_checkpoint(out, tcfg):
        pre = pretrain_sphere(fn, int(tcfg.get("pretrain_iters", 0)), bs, float(tcfg["lr"]), bounds, 1.0, gen, device)
    optim = torch.optim.Adam(model.parameters(), lr=float(tcfg["lr"]))
    sched = torch.optim.lr_scheduler.StepLR(optim, int(tcfg.get("lr_scheduler_step_size", 50)),
                                            float(tcfg.get("lr_scheduler_gamma", 0.8)))
    batcher = RayBatcher(images, cams, tcfg.get("pixel_lookup", "exact"), int(cfg.get("seed", 0)))
    steps = int(tcfg.get("steps_per_epoch") or len(images))
    wi, we = float(tcfg["inter_weight"]), float(tcfg["eikonal_weight"])
    n_geo = int(tcfg.get("eikonal_points") or bs)

    def epoch_fn(epoch: int) -> Dict[str, float]:
        acc: Dict[str, float] = {}
        for _ in range(steps):
            bundle, rgb = batcher(bs)
            res = model(bundle)
            lc = F.mse_loss(res["color"], rgb)
            rnd = random_points(n_geo, bounds, gen, device)
            d_r, g_r = fn.get_distance_and_gradient(rnd)
            li, le = inter_loss(d_r), eikonal_loss(g_r)
            loss = lc + wi * li + we * le
            optim.zero_grad(set_to_none=True)
            loss.backward()
            optim.step()
            model.after_step()
            for k, v in (("loss", loss), ("loss/color", lc), ("loss/inter", li), ("loss/eikonal", le)):
                acc[k] = acc.get(k, 0.0) + v.item() / steps
        acc["train_psnr"] = 10 * math.log10(1 / max(acc["loss/color"], 1e-12))
        return acc

    info = train_loop(out, model, optim, sched, tcfg, cfg, epoch_fn, desc="train surface", device=device)
    ev = evaluate_views(model, test_images.to(device), test_cams.to(device), tcfg.get("eval_views", -1))
    name = cfg.get("gif_name", "part_7")
    written: List[Any] = []
    k = min(4, ev["n_views"])
    row = torch.cat([torch.cat(list(ev["pred"][:k].cpu()), 1), torch.cat(list(test_images[:k]), 1)], 0)
    written.append(save_image(out / f"{name}_test_views.png", row))
    gcams = surround_cameras(**cfg["gif"], device=device)
    written += save_gif(out / f"{name}.gif", render_images(model, gcams, hw)["color"])
    mesh = _geometry(model, cfg, device)
    written += save_gif(out / f"{name}_geometry.gif", render_geometry(mesh, gcams, hw))
    metrics: Dict[str, Any] = {
        "scene": scene.source, "image_size": list(cfg["data"]["image_size"]), "train_views": len(images),
        "density": cfg["renderer"].get("density", "volsdf"), "alpha": cfg["renderer"].get("alpha"),
        "beta": cfg["renderer"].get("beta"), "s": cfg["renderer"].get("s"),
        "pretrain_loss": pre, "test_psnr": ev["psnr"], "test_views": ev["n_views"],
        "render_s_per_view": ev["render_s_per_view"], "steps": (info["end_epoch"] - info["start_epoch"]) * steps,
        "epochs": info["end_epoch"], "start_epoch": info["start_epoch"], "train_time_s": info["time_s"],
        "train_cpu_time_s": info["cpu_time_s"], "out_of_time": info["out_of_time"],
        **{k.replace("/", "_"): v for k, v in info["last"].items()},
        "mesh_faces": 0 if mesh is None else int(mesh.num_faces_per_mesh()[0]),
    }
    occ = getattr(model.sampler, "occupancy", None)
    if occ is not None:
        metrics["occupied_fraction"] = occ.occupancy_fraction
    if scene.source.startswith("builtin:"):
        true_mesh, _ = builtin_scene_mesh(scene.source.split(":", 1)[1])
        from l3d.ops import sample_points_from_meshes

        g = torch.Generator().manual_seed(1)
        true_pts = sample_points_from_meshes(true_mesh, 20000, generator=g)[0].to(device)
        metrics["geometry_vs_true_mesh"] = mesh_chamfer(mesh, true_pts)
    finish(out, metrics, written)
    return metrics
