"""A judge that is not the prior: a small CNN that names the shape, colour and view of a picture.

    python -m a4_gaussians_diffusion.diffusion.judge                                  # train (about a minute)
    python -m a4_gaussians_diffusion.diffusion.judge --score output/.../final.png --prompt "a red cube"
    python -m a4_gaussians_diffusion.diffusion.judge --score output/a4_gaussians_diffusion/image_runs

It is trained on :mod:`.renders` pictures (other seeds than the prior's) with three heads (shape,
colour, view), with light blur and noise added so that the decoded, slightly soft pictures of score
distillation are not out of its reach; its accuracy on held-out renders is in metrics.json. Training
writes ``judge.pt`` (weights and class names), ``losses.csv`` / ``losses.png`` and ``metrics.json``.

``--score PATH`` labels a PNG, every PNG of a folder (recursively) or a run folder, with the
judge at ``--load_checkpoint`` (default ``<output_dir>/judge.pt``); with ``--prompt`` it also says
whether each label matches what the prompt names (prompts name shape, colour and view as the
prior's captions do: "a red cube, side view"). Results: a table on stdout and ``scores.json``
beside the judge (or ``--output_file``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from l3d.cli import nonneg_float, positive_int, report, run_cli, script_parser
from l3d.errors import UserError, user_error
from l3d.media import load_image
from l3d.run import LOSS_LOG, LOSS_PLOT, LossLog, RunDir, atomic_write, check_finite
from l3d.train import choose_device, progress, seed_everything

from .renders import COLOURS, VIEWS, available_shapes, object_shown, parse_caption, render_set

JUDGE_SIZE = 32
HEADS = ("shape", "colour", "view")
QUICK = {"num_images": 600, "steps": 150}


class JudgeNet(nn.Module):
    """Conv(3->32->64->128) with pooling to 4 x 4, then one linear head per label."""

    def __init__(self, n_shapes: int, n_colours: int = len(COLOURS), n_views: int = len(VIEWS)):
        super().__init__()

        def block(i, o):
            return nn.Sequential(nn.Conv2d(i, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU(),
                                 nn.Conv2d(o, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU(), nn.MaxPool2d(2))

        self.features = nn.Sequential(block(3, 32), block(32, 64), block(64, 128), nn.Flatten(),
                                      nn.Linear(128 * 4 * 4, 128), nn.ReLU(), nn.Dropout(0.2))
        self.heads = nn.ModuleDict({"shape": nn.Linear(128, n_shapes), "colour": nn.Linear(128, n_colours),
                                    "view": nn.Linear(128, n_views)})

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Logits per head for images (B, 3, H, W) in [0, 1] (resized to 32 x 32)."""
        if x.shape[-2:] != (JUDGE_SIZE, JUDGE_SIZE):
            x = F.interpolate(x, (JUDGE_SIZE, JUDGE_SIZE), mode="area" if x.shape[-1] > JUDGE_SIZE else "bilinear")
        h = self.features(x * 2 - 1)
        return {k: head(h) for k, head in self.heads.items()}


class Judge:
    """A trained :class:`JudgeNet` with its class names."""

    def __init__(self, net: JudgeNet, shapes: Sequence[str]):
        self.net = net.eval()
        self.classes = {"shape": list(shapes), "colour": list(COLOURS), "view": list(VIEWS)}

    @classmethod
    def load(cls, path) -> "Judge":
        path = Path(path)
        if not path.is_file():
            raise user_error(path, "a judge checkpoint (train one: python -m a4_gaussians_diffusion.diffusion.judge)",
                             "no such file")
        state = torch.load(path, map_location="cpu", weights_only=True)
        net = JudgeNet(len(state["shapes"]))
        net.load_state_dict(state["model"])
        return cls(net, state["shapes"])

    @torch.no_grad()
    def probs(self, images: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Class probabilities per head for images (B, 3, H, W) in [0, 1]."""
        return {k: v.softmax(-1) for k, v in self.net(images.float().cpu()).items()}

    def labels(self, images: torch.Tensor) -> List[Dict[str, str]]:
        """The most likely name per head, per image, and ``object`` (:func:`.renders.object_shown`).
        A picture without an object in it (empty, or one colour filling the frame, as when the
        density of a DreamFusion run collapses) gets ``"none"`` for every head: the network alone
        would name the nearest class of pictures it never saw."""
        p = self.probs(images)
        shown = object_shown(images)
        return [{**({k: self.classes[k][int(p[k][i].argmax())] for k in HEADS} if shown[i] == "yes"
                    else {k: "none" for k in HEADS}), "object": shown[i]} for i in range(len(images))]

    def accuracy(self, images: torch.Tensor, prompt: str) -> Dict[str, Optional[float]]:
        """Share of ``images`` whose label matches what ``prompt`` names, per head (None: not named)."""
        want = parse_caption(prompt)
        got = self.labels(images)
        return {k: (sum(g[k] == want[k] for g in got) / len(got) if want[k] else None) for k in HEADS}


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Half the pictures blurred (down 2x, up again), all with a little Gaussian noise."""
    blur = F.interpolate(F.avg_pool2d(x, 2), scale_factor=2, mode="bilinear", align_corners=False)
    pick = (torch.rand(len(x), 1, 1, 1, generator=gen) < 0.5).float()
    x = pick * blur + (1 - pick) * x
    return (x + 0.03 * torch.randn(x.shape, generator=gen)).clamp(0, 1)


def build_parser():
    ap = script_parser(__doc__, "a4_gaussians_diffusion/judge", output_file="scores.json", presets={"quick": QUICK})
    ap.add_argument("--num_images", type=positive_int, default=4000, help="training renders")
    ap.add_argument("--num_test", type=positive_int, default=800, help="held-out renders for the accuracy")
    ap.add_flag("steps", default=1500)
    ap.add_flag("batch_size", default=64)
    ap.add_flag("lr", default=2e-3, help="Adam learning rate (cosine decay)")
    ap.add_argument("--weight_decay", type=nonneg_float, default=1e-4, help="AdamW weight decay")
    ap.add_argument("--no_cow", action="store_true", help="leave the course cow out even when its file is present")
    ap.add_argument("--score", default=None, metavar="PATH",
                    help="label this PNG / folder of PNGs / run folder instead of training")
    ap.add_argument("--prompt", default=None, help="with --score: compare the labels with what this prompt names")
    ap.add_flag("load_checkpoint", default=None, help="the judge to score with (default: <output_dir>/judge.pt)")
    return ap


def score(args) -> Dict:
    judge = Judge.load(args.load_checkpoint or Path(args.output_dir) / "judge.pt")
    path = Path(args.score)
    if path.is_file():
        files = [path]
    elif path.is_dir():
        files = sorted(p for p in path.rglob("*.png") if "iters" not in p.parts)
    else:
        raise user_error("--score", "a PNG file or a folder", f"{path} (not found)")
    if not files:
        raise user_error("--score", "a folder holding PNG files", f"{path} (none found)")
    rows = []
    for f in files:
        img = load_image(f)[..., :3].permute(2, 0, 1)[None].float()  # (1, 3, H, W)
        if img.max() > 1.5:
            img = img / 255.0
        lab = judge.labels(img)[0]
        rows.append({"file": str(f), **lab})
        print(f"{f}: {lab['colour']} {lab['shape']}, {lab['view']} view" if lab["object"] == "yes"
              else f"{f}: no object ({lab['object']})")
    out = {"judge": str(args.load_checkpoint or Path(args.output_dir) / "judge.pt"), "images": rows}
    if args.prompt:
        want = parse_caption(args.prompt)
        out["prompt"] = args.prompt
        out["match"] = {k: (sum(r[k] == want[k] for r in rows) / len(rows) if want[k] else None) for k in HEADS}
        print("share matching the prompt: " + ", ".join(f"{k} {v:.2f}" for k, v in out["match"].items()
                                                         if v is not None))
    dest = Path(args.output_file) if args.output_file else Path(args.output_dir) / "scores.json"
    atomic_write(dest, json.dumps(out, indent=2) + "\n")
    print(f"wrote {dest}")
    return out


def judged_grid(images: torch.Tensor, probs: Dict[str, torch.Tensor], truth: Dict[str, torch.Tensor],
                n: int = 16) -> torch.Tensor:
    """(3, H, W): the first ``n`` held-out renders in two rows, each framed green when the judge
    names its shape, colour and view right, red when it misses any of them."""
    n = max(2, min(n, len(images)) // 2 * 2)
    imgs = images[:n]
    ok = torch.stack([probs[k][:n].argmax(-1) == truth[k][:n] for k in HEADS]).all(0)
    colour = torch.where(ok[:, None], torch.tensor([0.2, 0.8, 0.2]), torch.tensor([0.9, 0.15, 0.15]))
    S, b = imgs.shape[-1], 3
    framed = colour[:, :, None, None].expand(n, 3, S + 2 * b, S + 2 * b).clone()
    framed[:, :, b:-b, b:-b] = imgs
    T = S + 2 * b
    return framed.reshape(2, n // 2, 3, T, T).permute(2, 0, 3, 1, 4).reshape(3, 2 * T, n // 2 * T)


def train(args) -> Path:
    device = choose_device(args.device)
    shapes = available_shapes(False if args.no_cow else None)
    data = render_set(args.num_images, args.seed + 1000, shapes=shapes)
    test = render_set(args.num_test, args.seed + 2000, shapes=shapes, show_progress=False)
    x = data.float_images()
    y = {"shape": data.shape, "colour": data.colour, "view": data.view}
    net = JudgeNet(len(shapes)).to(device)
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, args.steps)
    gen = torch.Generator().manual_seed(args.seed)
    with RunDir(args.output_dir) as run:
        log = run.track(LossLog(run.path(LOSS_LOG), append=False))
        net.train()
        for step in progress(range(args.steps), "judge"):
            idx = torch.randint(len(x), (args.batch_size,), generator=gen)
            out = net(augment(x[idx], gen).to(device))
            losses = {k: F.cross_entropy(out[k], y[k][idx].to(device)) for k in HEADS}
            loss = sum(losses.values())
            check_finite(loss, step)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            log.append(step, {f"loss/{k}": float(v.detach()) for k, v in losses.items()})
        net.eval()
        judge = Judge(net.cpu(), shapes)
        p = judge.probs(test.float_images())
        truth = {"shape": test.shape, "colour": test.colour, "view": test.view}
        acc = {k: float((p[k].argmax(-1) == truth[k]).float().mean()) for k in HEADS}
        blur_p = judge.probs(F.interpolate(F.avg_pool2d(test.float_images(), 2), scale_factor=2, mode="bilinear"))
        acc_blur = {k: float((blur_p[k].argmax(-1) == truth[k]).float().mean()) for k in HEADS}
        log.image(args.steps - 1, "val/heldout_judged", judged_grid(test.float_images(), p, truth))
        state = {"model": net.state_dict(), "shapes": list(shapes)}
        ckpt = atomic_write(run.path("judge.pt"), lambda f: torch.save(state, f))
        files = [ckpt, log.plot(run.path(LOSS_PLOT))]
        metrics = {"data": "procedural renders made here (l3d rasteriser), seeds apart from the prior's",
                   "shapes": list(shapes), "heldout_images": len(test), "heldout_accuracy": acc,
                   "heldout_accuracy_blurred": acc_blur,
                   "chance": {"shape": 1 / len(shapes), "colour": 1 / len(COLOURS), "view": 1 / len(VIEWS)},
                   "steps": args.steps, "train_images": args.num_images}
        report(run.path(), metrics, files)
    return Path(args.output_dir) / "judge.pt"


def main(argv=None):
    args = build_parser().parse_args(argv)
    seed_everything(args.seed)
    if args.score:
        return score(args)
    if args.prompt:
        raise user_error("--prompt", "only together with --score", args.prompt)
    return train(args)


if __name__ == "__main__":
    run_cli(main)
