"""A4 Q2 with the small prior trained here: does score distillation give what the prompt names?

    python bench/quality_a4_prior.py --model output/a4_gaussians_diffusion/prior/pipeline \\
        --judge output/a4_gaussians_diffusion/judge/judge.pt --output_dir output/bench/a4_prior

Image SDS (Q2.1): for each prompt, ``image_optimization`` with classifier-free guidance and without
(``--sds_guidance 0``), the same seeds; the judge (a classifier trained apart from the prior)
labels every final picture, and the share whose colour / shape matches the prompt is reported
against chance. Everything runs through the scripts' own command lines. Writes ``results.json``
and ``image_sds.png`` (the final pictures, labelled with the prompt and the judge's answer).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from a4_gaussians_diffusion.captions import with_banner  # noqa: E402
from a4_gaussians_diffusion.diffusion import image_optimization  # noqa: E402
from a4_gaussians_diffusion.diffusion.judge import Judge  # noqa: E402
from a4_gaussians_diffusion.diffusion.renders import COLOURS, parse_caption  # noqa: E402
from l3d.media import load_image, save_image  # noqa: E402

PROMPTS = ["a red cube", "a blue sphere", "a green cone", "a yellow torus", "a purple cube", "a red sphere",
           "a blue cone", "a green torus"]


def judge_turntable(run: Path, judge: Judge, gif: str = "final_mesh.gif") -> dict:
    """The judge's labels per turntable frame of a mesh-texture or DreamFusion run (a GIF or MP4),
    grouped by the frame's view (front / side / back by its azimuth, frames evenly spaced over 360
    degrees from azimuth 0): per view the share of frames with the prompt's colour, with its shape,
    judged as seen from their own camera's view, and with an object in them."""
    import imageio.v3 as iio

    from a4_gaussians_diffusion.diffusion.views import VIEW_NAMES, view_index

    frames = torch.as_tensor(iio.imread(run / gif))[..., :3].float() / 255.0  # (T, H, W, 3)
    labels = judge.labels(frames.permute(0, 3, 1, 2))
    az = torch.arange(len(frames)) * 360.0 / len(frames)
    views = view_index(az)
    want = parse_caption(json.loads((run / "metrics.json").read_text())["prompt"])
    out = {}
    for v, name in enumerate(VIEW_NAMES):
        idx = (views == v).nonzero().flatten().tolist()
        share = lambda ok: sum(ok(labels[i]) for i in idx) / max(len(idx), 1)  # noqa: E731
        out[name] = {"colour_accuracy": share(lambda lab: lab["colour"] == want["colour"]),
                     "shape_accuracy": share(lambda lab: lab["shape"] == want["shape"]),
                     "view_accuracy": share(lambda lab: lab["view"] == name),
                     "object_shown": share(lambda lab: lab["object"] == "yes"),
                     "frames": len(idx), "labels": [labels[i]["colour"] for i in idx],
                     "judged": [f"{labels[i]['colour']} {labels[i]['shape']} {labels[i]['view']}" for i in idx]}
    return out


def nerf_runs(args, judge: Judge) -> None:
    """DreamFusion (Q2.3) with ``--preset small_prior`` for every prompt and seed, and with
    ``--view_dep_text 0 / 1`` for ``--view_prompts``; the judge labels the 100 frames of each
    run's orbit video view by view. Writes ``--nerf_results`` (``nerf_results.json``) and ``<its stem>_orbits.png``."""
    from a4_gaussians_diffusion.diffusion import nerf_optimization

    out = Path(args.output_dir)
    jobs = [(p, s, 0, []) for p in args.nerf_prompts for s in range(args.seeds)]
    jobs += [(p, s, vd, args.view_args.split()) for p in args.view_prompts for s in range(args.seeds) for vd in (0, 1)]
    rows, strips = [], []
    t0 = time.perf_counter()
    for prompt, seed, vd, extra in jobs:
        folder = Path(nerf_optimization.main([
            "--model", args.model, "--preset", "small_prior", "--prompt", prompt, "--seed", str(seed),
            "--view_dep_text", str(vd), "--postfix", f"_s{seed}" + ("_view_args" if extra else ""),
            "--device", "cpu",
            "--output_dir", str(out / "nerf_runs"), "--no_tensorboard"]
            + extra))
        views = judge_turntable(folder, judge, "videos/rgb.mp4")
        frames = sum(v["frames"] for v in views.values())
        overall = {k: sum(v[k] * v["frames"] for v in views.values()) / frames
                   for k in ("colour_accuracy", "shape_accuracy", "view_accuracy", "object_shown")}
        rows.append({"prompt": prompt, "seed": seed, "view_dep_text": vd, "extra_flags": " ".join(extra),
                     "run": str(folder), **overall,
                     "views": views})
        print(f"{prompt!r} seed {seed} view_dep_text {vd}: " + ", ".join(f"{k} {v:.2f}" for k, v in overall.items()))
        strip = load_image(folder / "rgb.png")[..., :3].float()
        strip = strip / 255.0 if strip.max() > 1.5 else strip
        big = torch.nn.functional.interpolate(strip.permute(2, 0, 1)[None], scale_factor=3)[0].permute(1, 2, 0)
        strips.append(torch.as_tensor(with_banner(big, f"{prompt}{' (view text)' if vd else ''}, seed {seed}: "
                                                       f"colour {overall['colour_accuracy']:.2f} shape "
                                                       f"{overall['shape_accuracy']:.2f} view "
                                                       f"{overall['view_accuracy']:.2f}")))
    width = max(x.shape[1] for x in strips)
    name = args.nerf_results
    padded = [torch.nn.functional.pad(x, (0, 0, 0, width - x.shape[1]), value=1.0) for x in strips]
    save_image(out / f"{Path(name).stem}_orbits.png", torch.cat(padded, 0))
    plain = [r for r in rows if r["prompt"] in args.nerf_prompts]
    summary = {k: sum(r[k] for r in plain) / max(len(plain), 1)
               for k in ("colour_accuracy", "shape_accuracy", "object_shown")}
    summary["runs_with_prompted_object"] = sum(r["colour_accuracy"] >= 0.75 and r["shape_accuracy"] >= 0.75
                                               for r in plain)
    summary["runs"] = len(plain)
    view_text = {}
    for vd in (0, 1):
        r = [x for x in rows if x["prompt"] in args.view_prompts and x["view_dep_text"] == vd]
        view_text[f"view_dep_text_{vd}"] = {
            name: sum(x["views"][name]["view_accuracy"] for x in r) / max(len(r), 1)
            for name in ("front", "side", "back")}
    res = {"data": "made with the small prior trained here; judged by the classifier trained here",
           "model": args.model, "judge": args.judge, "preset": nerf_optimization.SMALL_PRIOR, "seeds": args.seeds,
           "view_args": args.view_args,
           "dreamfusion": summary, "view_accuracy_by_view": view_text, "runs": rows,
           "wall_s": round(time.perf_counter() - t0, 1)}
    (out / name).write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps({"dreamfusion": summary, "view_accuracy_by_view": view_text}, indent=2))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="pipeline folder written by train_prior")
    ap.add_argument("--judge", required=True, help="judge.pt written by the judge")
    ap.add_argument("--output_dir", default="output/bench/a4_prior", help="where the runs and results go")
    ap.add_argument("--steps", type=int, default=300, help="SDS steps per image")
    ap.add_argument("--guidance_scale", type=float, default=7.5, help="classifier-free guidance scale")
    ap.add_argument("--seeds", type=int, default=2, help="seeds per prompt")
    ap.add_argument("--mesh_runs", nargs="*", default=None,
                    help="only judge these mesh_optimization run folders (colour per view of final_mesh.gif "
                         "and initial_mesh.gif) and write mesh_results.json")
    ap.add_argument("--nerf", action="store_true",
                    help="run DreamFusion (--preset small_prior) instead of image SDS: --nerf_prompts, and "
                         "--view_prompts with and without --view_dep_text (with --view_args), judged view by view")
    ap.add_argument("--nerf_prompts", nargs="*", default=PROMPTS, help="DreamFusion prompts (with --nerf)")
    ap.add_argument("--view_prompts", nargs="*", default=["a blue cow"],
                    help="prompts of an object whose front and back differ, run with --view_dep_text 0 and 1")
    ap.add_argument("--view_args", default="--steps 600 --lr 5e-3 --view_dep_mode select",
                    help="extra nerf_optimization flags of the --view_prompts runs (both of them): breaking the "
                         "blob's symmetry into a body that is long one way takes more and larger steps")
    ap.add_argument("--nerf_results", default="nerf_results.json",
                    help="file name of the --nerf results (the orbit strip is <stem>_orbits.png)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    judge = Judge.load(args.judge)
    if args.nerf:
        nerf_runs(args, judge)
        return
    if args.mesh_runs:
        res = {r: {"final": judge_turntable(Path(r), judge), "initial": judge_turntable(Path(r), judge,
                                                                                    "initial_mesh.gif")}
               for r in args.mesh_runs}
        Path(args.output_dir).mkdir(parents=True, exist_ok=True)
        (Path(args.output_dir) / "mesh_results.json").write_text(json.dumps(res, indent=2) + "\n")
        for r, v in res.items():
            print(r, {k: {w: round(x["colour_accuracy"], 2) for w, x in d.items()} for k, d in v.items()})
        return
    out = Path(args.output_dir)
    rows, tiles = [], []
    t0 = time.perf_counter()
    for guided in (1, 0):
        for prompt in PROMPTS:
            for seed in range(args.seeds):
                folder = image_optimization.main([
                    "--model", args.model, "--prompt", prompt, "--sds_guidance", str(guided), "--device", "cpu",
                    "--steps", str(args.steps), "--warmup", "20", "--snapshot_every", str(args.steps),
                    "--guidance_scale", str(args.guidance_scale), "--seed", str(seed), "--postfix", f"_s{seed}",
                    "--output_dir", str(out / "image_runs"), "--no_tensorboard"])
                img = load_image(Path(folder) / "final.png")[..., :3].float()
                img = img / 255.0 if img.max() > 1.5 else img
                lab = judge.labels(img.permute(2, 0, 1)[None])[0]
                want = parse_caption(prompt)
                rows.append({"prompt": prompt, "guidance": guided, "seed": seed, "judge": lab,
                             "colour_ok": lab["colour"] == want["colour"], "shape_ok": lab["shape"] == want["shape"]})
                big = torch.nn.functional.interpolate(img.permute(2, 0, 1)[None], scale_factor=4)[0].permute(1, 2, 0)
                tiles.append(torch.as_tensor(with_banner(big, f"{'g' if guided else 'no g'}: {lab['colour']} "
                                                              f"{lab['shape']}")))
    summary = {}
    for guided in (1, 0):
        r = [x for x in rows if x["guidance"] == guided]
        summary["guidance" if guided else "no_guidance"] = {
            "colour_accuracy": sum(x["colour_ok"] for x in r) / len(r),
            "shape_accuracy": sum(x["shape_ok"] for x in r) / len(r), "runs": len(r)}
    summary["chance"] = {"colour": 1 / len(COLOURS), "shape": 1 / len(judge.classes["shape"])}
    n = len(PROMPTS) * args.seeds
    grid = torch.cat([torch.cat(tiles[:n], 1), torch.cat(tiles[n:], 1)], 0)
    save_image(out / "image_sds.png", grid)
    res = {"data": "made with the small prior trained here; judged by the classifier trained here",
           "model": args.model, "judge": args.judge, "steps": args.steps, "guidance_scale": args.guidance_scale,
           "prompts": PROMPTS, "seeds": args.seeds, "image_sds": summary, "runs": rows,
           "wall_s": round(time.perf_counter() - t0, 1)}
    (out / "results.json").write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
