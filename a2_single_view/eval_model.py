"""Q2: evaluate a trained image -> 3D model with F1 at distance thresholds 0.01 .. 0.05.

    python -m a2_single_view.eval_model --type vox|point|mesh|implicit [--load_checkpoint PATH]

For every test image: 1000 points from the prediction and from the ground-truth mesh, 1-NN
distances both ways, precision / recall / F1 per threshold (a2_single_view/evaluate.py; voxel
and implicit predictions go through marching cubes at 0.5, the [Z, Y, X] -> mesh-frame mapping,
and centring; an empty prediction scores 0).

The mean-shape baseline -- the same decoder trained on a constant input, i.e. the best single
shape it can predict (train_model --baseline writes it to <train dir>/mean_shape/) -- is
evaluated on the same test images when its checkpoint is there (or --baseline_checkpoint), and
the check is the margin: model F1@0.05 minus baseline F1@0.05, at least 10.

Writes to --output_dir (default output/a2_single_view/eval_<type>): eval_<type>.png (mean F1
against the threshold, model and baseline), metrics.json (mean F1 / precision / recall per
threshold, the baseline's F1, the margin and its check, count of empty predictions),
per_example.json (F1 of every test image), and --vis_count examples example_<k>.gif (+ .png):
input image | prediction | ground truth in the prediction's representation (voxels for vox and
implicit, points for point, the mesh for mesh), turning from the input view. With --export_mesh
(vox and implicit), example_<k>_mesh.ply / .obj: the predicted surface at --mesh_level through
marching cubes on a --mesh_resolution^3 grid (the implicit decoder is queried at every grid point,
so the mesh is finer than its 32^3 training grid), in the mesh frame of the data set; --type mesh:
the predicted mesh itself. With --export_points (--type point), example_<k>_points.ply.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import torch

from l3d.checks import check
from l3d.cli import nonneg_int, positive_int, report, run_cli, script_parser
from l3d.errors import user_error
from l3d.export import add_mesh_flags, export_mesh, save_point_cloud
from l3d.io import save_obj, save_ply
from l3d.media import save_gif_with_png
from l3d.run import atomic_path, load_checkpoint
from l3d.train import choose_device, progress

from .common import add_data_flags, comparison, data_text, gif_fps, gt_as_kind, gt_meshes, resolve_data, to_device, view_azimuth
from .data import R2N2, collate
from .evaluate import THRESHOLDS, evaluate_batch
from .features import ensure_features
from .models import KINDS, Encoder, SingleViewTo3D

MIN_MARGIN = 10.0  # F1@0.05 points the model must gain over the mean-shape baseline
from .train_model import build_model, forward, model_inputs


def default_checkpoint(kind: str) -> Path:
    return Path(f"output/a2_single_view/train_{kind}/checkpoints/last.pt")


def load_model(path, device: torch.device, kind: Optional[str] = None, verbose: bool = False):
    """(model in eval mode, config + "steps") from a checkpoint written by train_model."""
    state = load_checkpoint(path, map_location=device)  # UserError naming a damaged file
    if "model" not in state or not isinstance(state.get("config"), dict) or "type" not in state["config"]:
        raise user_error(path, "a train_model checkpoint (model, config with its type)",
                         f"keys {sorted(state)[:6]}")
    cfg = state["config"]
    if cfg["type"] not in KINDS:
        raise user_error(path, f"a model of type {', '.join(KINDS)}", repr(cfg["type"]))
    if kind is not None and cfg["type"] != kind:
        raise user_error(path, f"a {kind!r} model (--type {kind})", f"it holds a {cfg['type']!r} model")
    model = build_model(cfg, verbose=verbose).to(device)
    try:
        model.load_state_dict(state["model"])
    except (RuntimeError, KeyError, TypeError, AttributeError) as exc:
        first = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else type(exc).__name__
        raise user_error(path, "weights that fit the model its config describes", first) from None
    cfg = {**cfg, "steps": int(state.get("step", -1)) + 1}
    return model.eval(), cfg


@torch.no_grad()
def predict(model: SingleViewTo3D, batch: dict):
    """Predictions in evaluation form: vox/implicit (B, 1, D, D, D) probabilities, point (B, P, 3),
    mesh a Meshes batch."""
    out = forward(model, batch)
    if model.kind in ("vox", "implicit"):
        return torch.sigmoid(out)
    if model.kind == "mesh":
        return model.decoder.meshes(out)
    return out


def default_baseline(checkpoint) -> Path:
    """Where train_model --baseline puts the mean-shape model of a checkpoint's run."""
    return Path(checkpoint).parent.parent / "mean_shape" / "checkpoints" / "last.pt"


def eval_dataset(model: SingleViewTo3D, cfg: dict, args, device, split: str = "test",
                 views_per_model: Optional[int] = 1, max_examples: Optional[int] = None,
                 return_voxels: bool = False):
    """The data set of the evaluation, with features computed when the model needs them."""
    choice = resolve_data(args)
    ds = R2N2(choice.root, choice.split_file, split, args.class_names, views_per_model=views_per_model,
              return_voxels=return_voxels,
              inputs=model_inputs(argparse.Namespace(load_feat=bool(cfg.get("load_feat")),
                                                     mean_shape=bool(cfg.get("mean_shape")))))
    if cfg.get("load_feat"):
        enc = Encoder(cfg.get("pretrained", "auto"), verbose=False)
        if cfg.get("encoder") and enc.tag != cfg["encoder"]:
            raise user_error(getattr(args, "load_checkpoint", None) or default_checkpoint(cfg["type"]), f"features of the encoder available now ({enc.tag})",
                             f"a model trained on {cfg['encoder']} features",
                             "train again, or restore the encoder weights it was trained with")
        ensure_features(ds, enc, device)
    if max_examples is not None:
        ds.items = ds.items[:max_examples]
    return ds, choice


@torch.no_grad()
def run_eval(model: SingleViewTo3D, ds: R2N2, device, n_points: int = 1000, batch_size: int = 16,
             seed: int = 0, thresholds: Sequence[float] = THRESHOLDS, num_workers: int = 0) -> Dict[str, torch.Tensor]:
    """Per-example precision, recall, F1 (N, T) and valid (N,) over the whole data set."""
    loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=False, collate_fn=collate,
                                         num_workers=num_workers)
    gen = torch.Generator(device=device).manual_seed(seed)
    parts = {"precision": [], "recall": [], "f1": [], "valid": []}
    for batch in progress(loader, f"eval {model.kind}"):
        batch = to_device(batch, device)
        pred = predict(model, batch)
        r = evaluate_batch(model.kind, pred, gt_meshes(batch), n_points, thresholds, generator=gen)
        parts["precision"].append(r.precision.cpu())
        parts["recall"].append(r.recall.cpu())
        parts["f1"].append(r.f1.cpu())
        valid = r.f1.new_ones(r.f1.shape[0], dtype=torch.bool) if model.kind in ("point", "mesh") else \
            (r.precision.sum(1) + r.recall.sum(1) > 0)
        parts["valid"].append(valid.cpu())
    return {k: torch.cat(v) for k, v in parts.items()}


def plot_f1_curves(curves: Dict[str, Sequence[float]], path, title: str, thresholds: Sequence[float] = THRESHOLDS,
                   dashed: Sequence[str] = ()) -> Path:
    """A PNG of F1 (%) against the threshold, one line per entry of ``curves`` (the names in
    ``dashed`` drawn dashed, in the colour of the solid line before them), each line labelled
    with its F1 at the largest threshold."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8.0, 4.2), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    colour, n = None, 0
    for label, ys in curves.items():
        if label in dashed and colour is not None:
            style = dict(linestyle="--", marker="s", color=colour, alpha=0.8)
        else:
            style = dict(linestyle="-", marker="o", color=f"C{n % 10}")
            colour, n = style["color"], n + 1
        ys = list(ys)
        ax.plot(list(thresholds), ys, linewidth=2, markersize=5, label=f"{label} ({ys[-1]:.1f})", **style)
    ax.set_xlabel("distance threshold", fontsize=11)
    ax.set_ylabel("F1 (%)", fontsize=11)
    ax.set_xticks(list(thresholds))
    ax.set_ylim(0, 100)
    ax.grid(True, alpha=0.3)
    ax.set_title(title, fontsize=11)
    ax.legend(fontsize=9, loc="center left", bbox_to_anchor=(1.02, 0.5), title=f"(F1 at {thresholds[-1]:g})",
              title_fontsize=9, frameon=False)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path


@torch.no_grad()
def example_frames(model: SingleViewTo3D, ds: R2N2, idx: int, device, num_frames: int = 24, image_size: int = 128,
                   label: str = "prediction", seed: int = 0) -> torch.Tensor:
    """(T, 16 + S, 3 S, 3): input image | prediction | ground truth of item ``idx``, the ground
    truth in the prediction's representation (vox/implicit need a data set with voxels)."""
    sample = ds[idx]
    batch = to_device(collate([sample]), device)
    pred = predict(model, batch)
    if model.kind == "mesh":
        p = (pred.verts_list()[0].cpu(), pred.faces_list()[0].cpu())
        n = 0
    else:
        p = pred[0].cpu()
        n = p.shape[0]
    gt = gt_as_kind(model.kind, sample, n_points=n or 1000, generator=torch.Generator().manual_seed(seed))
    return comparison(model.kind, p, gt, ds.image(idx), num_frames=num_frames, image_size=image_size,
                      azim=view_azimuth(sample["R"], sample["T"]), pred_title=label,
                      gt_title=f"ground truth ({'voxels' if model.kind in ('vox', 'implicit') else model.kind})")


@torch.no_grad()
def example_field(model: SingleViewTo3D, ds: R2N2, idx: int, device, chunk: int = 65536):
    """points (P, 3) in the mesh frame -> occupancy probability (P,) of item ``idx``'s prediction:
    the implicit decoder queried at the points (any resolution), or the voxel grid read
    trilinearly (cell centres at ``(i + 0.5) / D - 0.5``, as :func:`grid_query_points`)."""
    import torch.nn.functional as F

    from .voxelize import to_voxel_frame

    batch = to_device(collate([ds[idx]]), device)
    grid = None if model.kind == "implicit" else predict(model, batch)  # (1, 1, D, D, D) [Z, Y, X]

    @torch.no_grad()
    def field(points: torch.Tensor) -> torch.Tensor:
        q = to_voxel_frame(points.to(device=device, dtype=torch.float32))
        if grid is not None:  # grid_sample's (x, y, z) in [-1, 1] address X, Y, Z; outside the cube: empty
            v = F.grid_sample(grid, (2.0 * q).view(1, -1, 1, 1, 3), mode="bilinear", padding_mode="zeros",
                              align_corners=False)
            return v.view(-1)
        return torch.cat([torch.sigmoid(forward(model, batch, queries=q[None, s:s + chunk]))[0]
                          for s in range(0, len(q), chunk)])

    return field


QUICK = {"num_frames": 24, "image_size": 128, "vis_count": 2, "data_preset": "quick"}


def export_example(model: SingleViewTo3D, ds: R2N2, idx: int, device, out: Path, name: str, args) -> list:
    """``--export_mesh``: ``<name>.ply`` / ``.obj`` of item ``idx``'s predicted surface (occupancy
    ``--mesh_level`` on a ``--mesh_resolution``^3 grid over the unit cube, mesh frame)."""
    if model.kind == "point":
        raise user_error("--export_mesh", "--type vox, implicit or mesh (--export_points writes a point prediction)",
                         "--type point")
    if model.kind == "mesh":  # the deformed sphere itself
        mesh = predict(model, to_device(collate([ds[idx]]), device))
        verts, faces = mesh.verts_list()[0].detach().cpu(), mesh.faces_list()[0].cpu()
        return [save_ply(out / f"{name}.ply", verts, faces), save_obj(out / f"{name}.obj", verts, faces)]
    _, paths = export_mesh(example_field(model, ds, idx, device), out, bbox=0.5, resolution=args.mesh_resolution,
                           level=args.mesh_level, inside="above", device=device, name=name)
    return paths


def build_parser(doc: str = __doc__) -> argparse.ArgumentParser:
    ap = script_parser(doc, "a2_single_view/eval_<type>", presets={"quick": QUICK})
    ap.add_argument("--type", choices=KINDS, default="vox", help="model type (must match the checkpoint)")
    ap.add_flag("load_checkpoint", nargs="?", const=True,
                help="checkpoint file (default, or given alone as in the course: "
                     "output/a2_single_view/train_<type>/checkpoints/last.pt)")
    ap.add_argument("--baseline_checkpoint", default=None,
                    help="mean-shape model to compare with (default: <checkpoint dir>/../mean_shape/checkpoints/"
                         "last.pt when it exists; 'none': no comparison)")
    ap.add_argument("--split", default="test", help="split to evaluate")
    ap.add_flag("num_points", default=1000, help="points sampled on the ground truth and on surfaces")
    ap.add_flag("batch_size", default=16, help="images per forward pass")
    ap.add_argument("--num_workers", type=nonneg_int, default=0, help="data loader worker processes")
    ap.add_argument("--views_per_model", type=nonneg_int, default=1, help="views of each test model (0: all listed)")
    ap.add_argument("--max_examples", type=positive_int, default=None, help="evaluate only the first N images")
    ap.add_argument("--vis_count", type=nonneg_int, default=4, help="example GIFs to write (--quick 2)")
    ap.add_argument("--vis_freq", type=positive_int, default=None,
                    help="the course's way: an example GIF of every N-th test image (instead of --vis_count)")
    ap.add_flag("num_frames", default=36, help="frames of each example GIF, one turn (--quick 24)")
    ap.add_flag("image_size", default=160, help="size of each panel of the example GIFs (--quick 128)")
    add_mesh_flags(ap, default_level=0.5, default_resolution=128)
    ap.add_argument("--export_points", action="store_true",
                    help="--type point: also write example_<k>_points.ply, the predicted point cloud of each example")
    add_data_flags(ap)
    return ap


def finish_args(args):
    if args.output_dir == "output/a2_single_view/eval_<type>":
        args.output_dir = f"output/a2_single_view/eval_{args.type}"
    if args.load_checkpoint is True:  # the course's bare --load_checkpoint
        args.load_checkpoint = None
    return args


def evaluate_checkpoint(args) -> dict:
    device = choose_device(args.device)
    ckpt = args.load_checkpoint or default_checkpoint(args.type)
    if not Path(ckpt).is_file():
        raise user_error("--load_checkpoint", "a checkpoint file", f"no file {ckpt}",
                         f"train first: python -m a2_single_view.train_model --type {args.type}")
    model, cfg = load_model(ckpt, device, args.type)
    base_ckpt = None
    if args.baseline_checkpoint != "none":
        base_ckpt = Path(args.baseline_checkpoint) if args.baseline_checkpoint else default_baseline(ckpt)
        if not base_ckpt.is_file():
            if args.baseline_checkpoint:
                raise user_error("--baseline_checkpoint", "a checkpoint file", f"no file {base_ckpt}")
            base_ckpt = None
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    views = args.views_per_model or None
    ds, choice = eval_dataset(model, cfg, args, device, args.split, views, args.max_examples,
                              return_voxels=args.type in ("vox", "implicit"))
    res = run_eval(model, ds, device, args.num_points, args.batch_size, args.seed, num_workers=args.num_workers)
    mean_f1 = res["f1"].mean(0).tolist()
    curves = {args.type: mean_f1}
    base = None
    if base_ckpt is not None:
        bmodel, bcfg = load_model(base_ckpt, device, args.type)
        if not bcfg.get("mean_shape"):
            raise user_error(base_ckpt, "a mean-shape model (train_model --mean_shape / --baseline)",
                             "a model of images")
        bds, _ = eval_dataset(bmodel, bcfg, args, device, args.split, views, args.max_examples)
        base = run_eval(bmodel, bds, device, args.num_points, args.batch_size, args.seed)
        curves["mean-shape baseline"] = base["f1"].mean(0).tolist()
    eval_s = time.perf_counter() - t
    written = [plot_f1_curves(curves, out / f"eval_{args.type}.png",
                              f"{args.type}: F1 on {len(ds)} held-out test images", dashed=("mean-shape baseline",))]
    per_example = [{"model_id": ds.models[i].model_id, "synset": ds.models[i].synset, "view": v,
                    "f1": [round(x, 3) for x in res["f1"][n].tolist()],
                    **({"baseline_f1": [round(x, 3) for x in base["f1"][n].tolist()]} if base is not None else {})}
                   for n, (i, v) in enumerate(ds.items)]
    with atomic_path(out / "per_example.json") as tmp:
        Path(tmp).write_text(json.dumps(per_example, indent=1))
    written.append(out / "per_example.json")
    if args.vis_freq:
        picks = list(range(0, len(ds), args.vis_freq))
    else:
        n_vis = min(args.vis_count, len(ds))
        picks = [int(k * len(ds) / max(1, n_vis)) for k in range(n_vis)]
    for k, idx in enumerate(picks):
        frames = example_frames(model, ds, idx, device, args.num_frames, args.image_size,
                                f"{args.type}: F1@0.05={float(res['f1'][idx, -1]):.0f}", args.seed)
        written.extend(save_gif_with_png(out / f"example_{k}.gif", frames, fps=gif_fps(args.num_frames), which="first"))
        if args.export_mesh:
            written.extend(export_example(model, ds, idx, device, out, f"example_{k}_mesh", args))
        if args.export_points:
            if model.kind != "point":
                raise user_error("--export_points", "--type point (--export_mesh writes the other kinds)",
                                 f"--type {model.kind}")
            cloud = predict(model, to_device(collate([ds[idx]]), device))[0]
            written.append(save_point_cloud(out / f"example_{k}_points.ply", cloud))
    empty = int((~res["valid"]).sum())
    metrics = {
        "type": args.type, "checkpoint": str(ckpt), "examples": len(ds), "split": args.split,
        **{f"f1@{t:.2f}": float(v) for t, v in zip(THRESHOLDS, mean_f1)},
        **{f"precision@{t:.2f}": float(v) for t, v in zip(THRESHOLDS, res["precision"].mean(0).tolist())},
        **{f"recall@{t:.2f}": float(v) for t, v in zip(THRESHOLDS, res["recall"].mean(0).tolist())},
        "empty_predictions": empty, "eval_time_s": eval_s,
        "train_steps_of_checkpoint": cfg["steps"], "encoder": cfg.get("encoder"), "mean_shape": bool(cfg.get("mean_shape")),
        "data": data_text(choice), "classes": args.classes,
    }
    metrics["checks"] = {}  # without a baseline there is nothing to hold the model to (the part shows "missing")
    if base is not None:
        b = float(base["f1"][:, -1].mean())
        margin = mean_f1[-1] - b
        metrics.update({"baseline_checkpoint": str(base_ckpt), "baseline_f1@0.05": b,
                        **{f"baseline_f1@{t:.2f}": float(v) for t, v in zip(THRESHOLDS, curves["mean-shape baseline"])},
                        "margin_f1@0.05": margin})
        metrics["checks"] = {"f1_margin_over_mean_shape": check(
            margin, min=MIN_MARGIN,
            what=f"F1@0.05 (%) of the model ({mean_f1[-1]:.1f}) minus that of the mean-shape baseline ({b:.1f}: the "
                 f"same decoder trained on a constant input), on the same {len(ds)} held-out test images")}
    report(out, metrics, written)
    return {**metrics, "per_example_f1": res["f1"], "dataset": ds, "model": model,
            "baseline_per_example_f1": None if base is None else base["f1"]}


def run(argv=None) -> dict:
    """Like the command line, for Python callers: the metrics plus "model", "dataset" and
    "per_example_f1" (N, T)."""
    return evaluate_checkpoint(finish_args(build_parser().parse_args(argv)))


def main(argv=None):
    res = run(argv)
    return {k: v for k, v in res.items() if k not in ("dataset", "model", "per_example_f1", "baseline_per_example_f1")}


if __name__ == "__main__":
    run_cli(main)


__all__: List[str] = ["load_model", "predict", "run_eval", "plot_f1_curves", "example_frames", "default_baseline", "run",
                      "main"]
