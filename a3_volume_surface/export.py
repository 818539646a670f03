"""Export the surface of a trained A3 run as mesh.ply / mesh.obj, from its checkpoint (no retraining).

    python -m a3_volume_surface.export --load_checkpoint output/a3_volume_surface/part_7
    python -m a3_volume_surface.export --load_checkpoint output/a3_volume_surface/part_3 --mesh_level 10
    python -m a3_volume_surface.export --load_checkpoint output/a3_volume_surface/part_7 --field density --mesh_level 20

--load_checkpoint is the run folder (its newest intact checkpoint in checkpoints/ is used) or one
checkpoint file; the checkpoint holds the run's config, so the model is rebuilt from it alone.

The field: "sdf" (the default for the neural SDF of parts 6, 7, 8.2, 8.3 and the analytic SDFs;
the surface is its zero level, inside negative) or "density" (the default for NeRF, parts 3, 4,
8.2; for an SDF model the renderer's SDF-to-density, VolSDF or NeuS; the surface is where the
density rises above --mesh_level, default 10). It is sampled on a --mesh_resolution^3 grid over
the cube [-bound, bound]^3: --bound, else the run's geometry.scale, sampler.bound_radius or
training.bounds, else the sphere every camera's near bound leaves free
(gif.radius - sampler.min_depth). Vertices are coloured by the model's colour at them (NeRF: seen
from outside, along the direction to the box centre).

Writes mesh.ply (with vertex colours) and mesh.obj into --output_dir (default: the run folder),
and the counts and timings under "mesh_export" in that folder's metrics.json.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

import torch

from l3d.cli import positive_float, positive_int, run_cli, script_parser
from l3d.errors import UserError, user_error
from l3d.export import export_mesh
from l3d.run import atomic_path, load_checkpoint, load_latest_intact, write_metrics
from l3d.train import choose_device

__all__ = ["load_run", "field_functions", "default_bound", "export_model_mesh", "export_after_training", "main"]

#: --mesh_level when none is given, per field.
DEFAULT_LEVEL = {"sdf": 0.0, "density": 10.0}
FIELDS = ("auto", "sdf", "density")


def load_run(path: Any, device: Any = "cpu") -> Tuple[Any, Dict[str, Any], Path]:
    """(model in eval mode, the run's config, the run folder) of an A3 run folder or checkpoint file.

    Raises:
        UserError: no checkpoint there, a damaged one, or one that is not an A3 model's.
    """
    from .model import Model

    p = Path(path)
    if p.is_dir():
        folder = p.parent if p.name == "checkpoints" else p
        state = load_latest_intact(folder / "checkpoints", map_location="cpu")
        if state is None:
            raise user_error(p, "an A3 run folder with checkpoints/ (a training run: parts 2, 3, 4, 6, 7, 8.2, 8.3)",
                             "no checkpoint")
    elif p.is_file():
        state = load_checkpoint(p, map_location="cpu")
        folder = p.parent.parent if p.parent.name == "checkpoints" else p.parent
    else:
        raise user_error(p, "an A3 run folder or checkpoint file", "no such file or folder")
    cfg = state.get("config")
    if not isinstance(cfg, Mapping) or "implicit_function" not in cfg or "model" not in state:
        raise user_error(p, "a checkpoint of an A3 training run (model and config)", "other contents")
    try:
        model = Model(cfg)
        model.load_state_dict(state["model"])
    except (RuntimeError, ValueError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise user_error(p, "a checkpoint that fits the model of its own config", first[:200]) from None
    return model.to(device).eval(), dict(cfg), folder


def _nerf_color(implicit_fn, center: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    from l3d.rays import RayBundle

    def color(points: torch.Tensor) -> torch.Tensor:
        dirs = torch.nn.functional.normalize(center.to(points) - points, dim=-1)  # seen from outside
        bundle = RayBundle(points, dirs, torch.zeros(len(points), 1, device=points.device, dtype=points.dtype))
        return implicit_fn(bundle)["feature"][:, 0]  # (P, 3)

    return color


def field_functions(model, field: str = "auto") -> Tuple[str, Callable, Optional[Callable]]:
    """(field name, points (P, 3) -> values (P,), points -> colours (P, 3) or None) of an A3 model.

    ``field``: "sdf", "density" or "auto" (sdf when the model has a distance, else density).
    """
    fn = model.implicit_fn
    if hasattr(fn, "get_distance"):
        distance = fn.get_distance
    elif isinstance(getattr(fn, "sdf", None), torch.nn.Module):
        distance = fn.sdf
    else:
        distance = None
    if field == "auto":
        field = "sdf" if distance is not None else "density"
    if field == "sdf":
        if distance is None:
            raise user_error("--field", "density for this model (a NeRF has no signed distance)", "sdf")
        values = distance
    elif field == "density":
        try:
            model.density(torch.zeros(1, 3, device=next(iter(model.parameters()), torch.zeros(1)).device))
        except ValueError:
            raise user_error("--field", "sdf for this model (it has no volume density)", "density") from None
        values = model.density
    else:
        raise user_error("--field", f"one of {', '.join(FIELDS)}", field)
    if hasattr(fn, "get_color"):
        color = fn.get_color
    elif hasattr(fn, "density") and hasattr(fn, "color_out"):  # NeRF
        color = _nerf_color(fn, torch.zeros(3))
    else:
        color = None
    return field, values, color


def default_bound(cfg: Mapping[str, Any]) -> Tuple[float, str]:
    """(half-side of the export cube, where it came from) for a run's config."""
    geo = cfg.get("geometry") or {}
    if geo.get("scale"):
        return float(geo["scale"]), "geometry.scale"
    sampler = cfg.get("sampler") or {}
    if sampler.get("bound_radius"):
        return float(sampler["bound_radius"]), "sampler.bound_radius"
    bounds = (cfg.get("training") or {}).get("bounds")
    if bounds:
        return float(torch.tensor(bounds, dtype=torch.float64).abs().max()), "training.bounds"
    gif = cfg.get("gif") or {}
    if gif.get("radius") and sampler.get("min_depth"):
        r = float(gif["radius"]) - float(sampler["min_depth"])
        if r > 0:
            return r, "gif.radius - sampler.min_depth"
    return 3.0, "default"


def export_after_training(model, cfg: Mapping[str, Any], job: Any, device: Any = None,
                          normalization: Any = None) -> list:
    """The mesh of a run that was started with ``export_mesh=true`` (config keys ``mesh_resolution``,
    ``mesh_level``, ``mesh_field``), written into the run's folder ``job`` (an
    :class:`a3_volume_surface.common.Job`) before it commits; returns the paths written (none when
    ``export_mesh`` is false).

    ``normalization``: the :class:`l3d.scenes.Normalization` of a scene read from a user's folder;
    then ``mesh_file_frame.ply`` / ``.obj`` hold the same mesh in the file's own frame (where its
    COLMAP points or other tools' outputs lie), beside ``mesh.ply`` in the frame the model was
    trained in."""
    if not cfg.get("export_mesh", False):
        return []
    was_training = model.training
    model.eval()
    try:
        metrics = export_model_mesh(model, cfg, job / ".", field=str(cfg.get("mesh_field", "auto")),
                                    resolution=int(cfg.get("mesh_resolution", 256)), level=cfg.get("mesh_level"),
                                    device=device)
    finally:
        model.train(was_training)
    written = [job / name for name in metrics["files"]]
    if normalization is not None and normalization.mode != "none":
        import trimesh

        mesh = trimesh.load(job / "mesh.ply", process=False)
        verts = torch.as_tensor(mesh.vertices, dtype=torch.float64)
        mesh.vertices = normalization.invert(verts).numpy()
        for ext in ("ply", "obj"):
            path = job / f"mesh_file_frame.{ext}"
            with atomic_path(path) as tmp:
                mesh.export(str(tmp), file_type=ext)
            written.append(path)
        write_metrics(job / "metrics.json", {"mesh_export": {"file_frame": normalization.to_dict()}})
    return written


def build_parser():
    ap = script_parser(__doc__, "a3_volume_surface/export")
    for action in ap._actions:  # the run folder is the natural home of its mesh
        if action.dest == "output_dir":
            action.default = None
            action.help = "folder for mesh.ply and mesh.obj (default: the run folder of --load_checkpoint)"
    ap.add_flag("load_checkpoint", required=True,
                help="the A3 run folder (its newest intact checkpoint) or one checkpoint file")
    ap.add_flag("mesh_resolution", default=256)
    ap.add_flag("mesh_level", default=None, help="iso-value (default: 0 for --field sdf, 10 for --field density)")
    ap.add_argument("--field", choices=FIELDS, default="auto",
                    help="the field to mesh: sdf (zero level, inside negative) or density (inside above the level); "
                         "auto: sdf when the model has one, else density")
    ap.add_argument("--bound", type=positive_float, default=None,
                    help="half-side of the cube [-bound, bound]^3 to mesh (default: from the run's config)")
    ap.add_argument("--chunk_size", type=positive_int, default=65536, help="field evaluations per network call")
    ap.add_argument("--no_color", action="store_true", help="skip vertex colours (mesh.ply without red/green/blue)")
    return ap


def export_model_mesh(model, cfg: Mapping[str, Any], output_dir: Any, field: str = "auto",
                      resolution: int = 256, level: Optional[float] = None, bound: Optional[float] = None,
                      color: bool = True, chunk: int = 65536, device: Any = None) -> Dict[str, Any]:
    """mesh.ply / mesh.obj of a trained A3 ``model`` (with its run ``cfg``) into ``output_dir``, and
    ``"mesh_export"`` (counts, timings, file sizes) merged into that folder's metrics.json.

    This is the whole export; a training run calls it after training as
    ``export_model_mesh(model, cfg, out_dir, resolution=..., level=...)``.

    Raises:
        UserError: the field has no such kind, or the level set does not cross the box.
    """
    field, values, colour_fn = field_functions(model, field)
    level = DEFAULT_LEVEL[field] if level is None else float(level)
    bound, bound_from = (float(bound), "--bound") if bound is not None else default_bound(cfg)
    out = Path(output_dir)
    if out.exists() and not out.is_dir():
        raise user_error("--output_dir", "a folder", f"a file ({out})")
    t0 = time.perf_counter()
    try:
        mesh, written = export_mesh(values, out, bound, resolution, level, inside="below" if field == "sdf" else "above",
                                    color_fn=colour_fn if color else None, chunk=chunk, device=device)
    except UserError as exc:
        raise UserError(f"{exc} (--field {field}, --bound {bound:g})") from None
    total = time.perf_counter() - t0
    metrics = {
        "field": field, "level": level, "bound": bound, "bound_from": bound_from, "resolution": resolution,
        "vertices": len(mesh.verts), "faces": len(mesh.faces), "field_min": mesh.field_range[0],
        "field_max": mesh.field_range[1], "grid_time_s": mesh.grid_time_s, "marching_cubes_time_s": mesh.mc_time_s,
        "total_time_s": total, "device": str(device), "checkpoint_config": cfg.get("part") or cfg.get("type"),
        "files": {p.name: p.stat().st_size for p in written},
    }
    write_metrics(out / "metrics.json", {"mesh_export": metrics})
    print(f"{field} level {level:g} on a {resolution}^3 grid over [-{bound:g}, {bound:g}]^3 "
          f"({bound_from}): {len(mesh.verts)} vertices, {len(mesh.faces)} faces in {total:.1f} s "
          f"(field {mesh.grid_time_s:.1f} s, marching cubes {mesh.mc_time_s:.1f} s)")
    for p in written:
        print(f"wrote {p} ({p.stat().st_size / 1e6:.1f} MB)")
    return metrics


def run_export(args) -> Dict[str, Any]:
    device = choose_device(args.device)
    model, cfg, folder = load_run(args.load_checkpoint, device)
    try:
        return export_model_mesh(model, cfg, args.output_dir or folder, args.field, args.mesh_resolution,
                                 args.mesh_level, args.bound, not args.no_color, args.chunk_size, device)
    except UserError as exc:
        raise UserError(f"{args.load_checkpoint}: {exc}") from None


def main(argv=None):
    return run_export(build_parser().parse_args(argv))


if __name__ == "__main__":
    run_cli(main)
