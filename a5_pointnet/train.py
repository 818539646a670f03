"""Train PointNet (or PointNet++, the model with locality) for classification or part segmentation.

    python -m a5_pointnet.train --task cls                       # course settings: 250 epochs, batch 32, lr 1e-3
    python -m a5_pointnet.train --task seg --model pointnet2
    python -m a5_pointnet.train --task cls --quick               # a few CPU minutes: half width, 512 points, 4 epochs
    python -m a5_pointnet.train --task cls --resume              # continue from the last checkpoint

Data: the course's ``a5/{cls,seg}/*.npy`` under the data root when present, else the procedural
chairs/vases/lamps (generated once into --cache_dir). Each training step uses a fresh random
subset of ``--num_points`` points of every cloud; after every epoch the test accuracy is measured
on ``--eval_points`` points per cloud. Writes into --output_dir (default output/a5_pointnet/<task>,
or <task>_pointnet2): ``checkpoints/`` (ckpt_<epoch>.pt every --save_every epochs, best.pt = best
test accuracy, last.pt), ``log.csv`` and ``curves.png`` (loss and accuracies per epoch), and
``metrics.json`` with ``test_accuracy`` = the best checkpoint's accuracy on the whole test split
at ``--final_points`` points per cloud (the course's 10000), checked against 0.90 (cls) or 0.80
(seg) for ``python -m l3d.report --check``. Ctrl-C saves a checkpoint after the
current batch; --resume then continues with the next epoch.
"""

from __future__ import annotations

import argparse
import math
import shutil
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from l3d.cli import report, run_cli, script_parser
from l3d.errors import UserError
from l3d.run import CheckpointManager, LossLog, check_finite
from l3d.train import choose_device, graceful_interrupt, progress, seed_everything

from .baseline import fit_bbox_baseline
from .common import (clear_metrics, load_trained, predict, random_subsets, retain_freed_memory, take_subsets,
                     tidy_parser)
from .data import NUM_CLASSES, add_data_flags, load_split, resolve_data
from .models import ARCHS, ModelConfig, build_model
from .targets import accuracy_check

# settings that --quick changes (None in the parser = "not given"): full run, then quick run
FULL = {"num_epochs": 250, "batch_size": 32, "num_points": 10000, "eval_points": 10000, "width": 1.0,
        "schedule": "constant", "sa_points": (512, 128), "sa_samples": (32, 64)}
_QUICK_PN = {"num_points": 512, "eval_points": 512, "width": 0.5, "schedule": "cosine"}
_QUICK_PN2 = {**_QUICK_PN, "sa_points": (128, 32), "sa_samples": (16, 16)}
QUICK = {
    ("cls", "pointnet"): {**_QUICK_PN, "num_epochs": 4},
    ("seg", "pointnet"): {**_QUICK_PN, "num_epochs": 6, "batch_size": 8},
    ("cls", "pointnet2"): {**_QUICK_PN2, "num_epochs": 4},
    ("seg", "pointnet2"): {**_QUICK_PN2, "num_epochs": 6, "batch_size": 8},
}


def build_parser() -> argparse.ArgumentParser:
    ap = script_parser(__doc__, "a5_pointnet/<task>")
    for a in ap._actions:
        if a.dest == "output_dir":
            a.default, a.help = None, "output folder (default: output/a5_pointnet/<task>[_<model>])"
    ap.add_argument("--task", choices=["cls", "seg"], default="cls",
                    help="classification (3 classes) or segmentation (6 parts)")
    ap.add_argument("--model", choices=ARCHS, default="pointnet",
                    help="pointnet, or pointnet2 = PointNet++ with farthest-point sampling and ball query (locality)")
    ap.add_argument("--num_epochs", type=int, default=None,
                    help=f"epochs (default {FULL['num_epochs']}; --quick: cls 4, seg 6)")
    ap.add_argument("--batch_size", type=int, default=None, help="clouds per step (default 32; --quick seg: 8)")
    ap.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    ap.add_argument("--schedule", choices=["constant", "cosine"], default=None,
                    help="learning-rate schedule over the epochs (default constant; --quick: cosine)")
    ap.add_argument("--num_points", type=int, default=None,
                    help="points per cloud in each training step, a fresh random subset (default 10000; --quick: 512)")
    ap.add_argument("--eval_points", type=int, default=None,
                    help="points per cloud for the per-epoch test accuracy (default 10000; --quick: 512)")
    ap.add_argument("--final_points", type=int, default=10000,
                    help="points per cloud for the final test accuracy of the best checkpoint")
    ap.add_argument("--eval_batch_size", type=int, default=16, help="clouds per forward pass when evaluating")
    ap.add_argument("--bn_batches", type=int, default=8,
                    help="before each evaluation, re-estimate the batch-norm statistics of the current weights "
                         "on this many training batches (0: keep the running averages, as the course does)")
    ap.add_argument("--save_every", type=int, default=10,
                    help="save ckpt_<epoch>.pt every this many epochs (0: only best/last)")
    ap.add_argument("--keep_last", type=int, default=3, help="periodic checkpoints kept (older ones are deleted)")
    ap.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --output_dir")
    ap.add_argument("--baseline", action=argparse.BooleanOptionalAction, default=True,
                    help="cls: also fit and score the bounding-box baseline")
    g = ap.add_argument_group("model")
    g.add_argument("--width", type=float, default=None, help="channel multiplier (default 1.0; --quick: 0.5)")
    g.add_argument("--dropout", type=float, default=0.3, help="dropout before the output layer")
    g.add_argument("--sa_points", type=int, nargs="+", default=None,
                   help="PointNet++ centroids per level (default 512 128; --quick: 128 32)")
    g.add_argument("--sa_radius", type=float, nargs="+", default=[0.2, 0.4], help="PointNet++ ball radii per level")
    g.add_argument("--sa_samples", type=int, nargs="+", default=None,
                   help="PointNet++ neighbours per ball (default 32 64; --quick: 16 16)")
    add_data_flags(ap)
    return tidy_parser(ap, "the CPU settings of the acceptance runs: half width, 512 training points, 4 (cls) or 6 "
                           "(seg) epochs, a smaller procedural data set; a few minutes on two cores")


def resolve_settings(args: argparse.Namespace) -> None:
    """Fill the flags left unset with the full or the --quick settings; check them."""
    quick = QUICK[args.task, args.model] if args.quick else {}
    for key, full in FULL.items():
        if getattr(args, key) is None:
            setattr(args, key, quick.get(key, full))
    if args.output_dir is None:
        args.output_dir = f"output/a5_pointnet/{args.task}" + ("" if args.model == "pointnet" else f"_{args.model}")
    for key in ("num_epochs", "batch_size", "num_points", "eval_points", "final_points", "eval_batch_size"):
        if getattr(args, key) < 1:
            raise ValueError(f"--{key} must be >= 1, got {getattr(args, key)}")
    if args.lr <= 0 or args.width <= 0 or not 0 <= args.dropout < 1:
        raise ValueError("--lr and --width must be positive and --dropout in [0, 1)")
    if not len(args.sa_points) == len(args.sa_radius) == len(args.sa_samples):
        raise ValueError("--sa_points, --sa_radius and --sa_samples need one value per level each")


def lr_at(args: argparse.Namespace, epoch: int) -> float:
    if args.schedule == "cosine":
        return args.lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * epoch / args.num_epochs)))
    return args.lr


@torch.no_grad()
def recalibrate_batch_norm(model: torch.nn.Module, batches) -> None:
    """Replace the batch-norm running statistics by the plain average over ``batches`` (point
    clouds (B, P, 3)) of the current weights. The running averages of a fast-changing network lag
    behind its weights and can make early evaluations meaningless; this is "precise BN"."""
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    was_training = model.training
    model.train()
    for pts in batches:
        model(pts)
    for m, mom in zip(bns, momenta):
        m.momentum = mom
    model.train(was_training)


def evaluate(model, points: torch.Tensor, labels: torch.Tensor, num_points: int, batch_size: int, seed: int):
    """(accuracy, predictions, subset indices) on ``num_points`` random points per cloud."""
    idx = random_subsets(points.shape[0], points.shape[1], num_points, seed)
    pts = take_subsets(points, idx)
    pred = predict(model, pts, batch_size)
    gt = labels if labels.dim() == 1 else take_subsets(labels, idx)
    acc = float((pred == gt).double().mean()) if gt.numel() else float("nan")
    return acc, pred, idx


def main(argv=None):
    args = build_parser().parse_args(argv)
    resolve_settings(args)
    retain_freed_memory()
    device = choose_device(args.device)
    seed_everything(args.seed)
    task = args.task
    out = Path(args.output_dir)
    spec = resolve_data(task, args.data, args.data_dir, args.cache_dir, args.num_train, args.num_test,
                        args.data_seed, quick=args.quick)
    train_np, train_lab = load_split(spec.root, task, "train")
    test_np, test_lab = load_split(spec.root, task, "test")
    train_x, train_y = torch.from_numpy(train_np), torch.from_numpy(train_lab)
    test_x, test_y = torch.from_numpy(test_np), torch.from_numpy(test_lab)
    if len(train_x) == 0 or len(test_x) == 0:
        raise ValueError(f"{spec.root}/{task}: empty training or test split")
    P = train_x.shape[1]

    cfg = ModelConfig(task=task, arch=args.model, num_classes=NUM_CLASSES[task], width=args.width, dropout=args.dropout,
                      sa_points=tuple(args.sa_points), sa_radius=tuple(args.sa_radius), sa_samples=tuple(args.sa_samples))
    model = build_model(cfg).to(device)
    optim = torch.optim.Adam(model.parameters(), lr=args.lr)
    ckpt_dir = out / "checkpoints"
    start = 0
    if args.resume:
        ckpts = CheckpointManager(ckpt_dir, every=args.save_every, keep_last=args.keep_last, mode="max")
        state = ckpts.resume()
        if state is None:
            print(f"note: no checkpoint in {ckpt_dir}; starting from scratch", file=sys.stderr)
        else:
            if ModelConfig.from_dict(state["model_config"]) != cfg:
                raise UserError(f"{ckpt_dir}: the checkpoint's model ({state['model_config']}) differs from the flags' "
                                f"({cfg.to_dict()}); resume with the same --task/--model/--width/--sa_* flags")
            model.load_state_dict(state["model"])
            optim.load_state_dict(state["optim"])
            start = int(state["step"]) + 1
            print(f"resuming after epoch {start} from {ckpts.last_path}", file=sys.stderr)
    else:
        if ckpt_dir.exists():  # a fresh run: old checkpoints (and their best.json) would mix in
            shutil.rmtree(ckpt_dir)
        clear_metrics(out)
        ckpts = CheckpointManager(ckpt_dir, every=args.save_every, keep_last=args.keep_last, mode="max")
    log = LossLog(out / "log.csv", append=args.resume and start > 0)
    if start > 0:
        log.rewind(start - 1)

    def state_dict(epoch_done: int, partial: bool = False) -> dict:
        return {"model": model.state_dict(), "optim": optim.state_dict(), "model_config": cfg.to_dict(),
                "data": spec.to_dict(), "args": {k: v for k, v in vars(args).items()}, "epoch": epoch_done,
                "partial_epoch": partial}

    g = torch.Generator().manual_seed(args.seed)
    g.manual_seed(args.seed * 1000003 + start)  # resumed runs draw fresh batches
    n_train = len(train_x)
    t_train, clouds_seen = 0.0, 0
    step = start * math.ceil(n_train / args.batch_size)
    with graceful_interrupt() as stop:
        for epoch in progress(range(start, args.num_epochs), "epochs", disable=True if args.num_epochs < 2 else None):
            for group in optim.param_groups:
                group["lr"] = lr_at(args, epoch)
            model.train()
            t0 = time.perf_counter()
            perm = torch.randperm(n_train, generator=g)
            loss_sum, correct, count, clouds = 0.0, 0, 0, 0
            for s in progress(range(0, n_train, args.batch_size), f"epoch {epoch}", leave=False):
                idx = perm[s:s + args.batch_size]
                if len(idx) < 2 and n_train >= 2:  # batch norm needs two clouds
                    continue
                sub = random_subsets(len(idx), P, args.num_points, int(torch.randint(0, 2**31, (1,), generator=g)))
                pts = take_subsets(train_x[idx], sub).to(device)
                lab = train_y[idx] if task == "cls" else take_subsets(train_y[idx], sub)
                lab = lab.to(device)
                logits = model(pts)
                loss = F.cross_entropy(logits.reshape(-1, cfg.num_classes), lab.reshape(-1))
                check_finite(loss, step, name=f"training loss (epoch {epoch})")
                optim.zero_grad(set_to_none=True)
                loss.backward()
                optim.step()
                step += 1
                loss_sum += loss.item() * len(idx)
                correct += int((logits.argmax(-1) == lab).sum())
                count += lab.numel()
                clouds += len(idx)
                if stop.requested:
                    break
            t_train += time.perf_counter() - t0
            clouds_seen += clouds
            if stop.requested:
                path = ckpts.save(epoch, state_dict(epoch, partial=True))
                print(f"interrupted: saved {path}; --resume continues with epoch {epoch + 1}", file=sys.stderr)
                break
            if args.bn_batches > 0:
                recal = perm[: args.bn_batches * args.batch_size].split(args.batch_size)
                recalibrate_batch_norm(model, (take_subsets(train_x[i], random_subsets(
                    len(i), P, args.num_points, args.seed + k)).to(device) for k, i in enumerate(recal) if len(i) > 1))
            test_acc, _, _ = evaluate(model, test_x, test_y, args.eval_points, args.eval_batch_size, seed=args.seed)
            row = {"train_loss": loss_sum / max(1, clouds),
                   "acc/train": correct / max(1, count), "acc/test": test_acc, "lr": lr_at(args, epoch),
                   "epoch_time_s": time.perf_counter() - t0}
            log.append(epoch, row)
            print(f"epoch {epoch}: loss {row['train_loss']:.4f}, train acc {row['acc/train']:.4f}, "
                  f"test acc {test_acc:.4f} ({row['epoch_time_s']:.1f} s)", flush=True)
            if ckpts.is_better(test_acc) or ckpts.due(epoch) or epoch == args.num_epochs - 1:
                ckpts.save(epoch, state_dict(epoch), metric=test_acc)
    curves = log.plot(out / "curves.png", groups=[["train_loss"], ["acc/train", "acc/test"], ["lr"]],
                      title=f"{task} {args.model}", xlabel="epoch")

    # final: the best checkpoint on the whole test split at --final_points points per cloud
    best_path = ckpts.best_path if ckpts.best_path.is_file() else ckpts.last_path
    if not best_path.is_file():
        raise UserError("no checkpoint was written (interrupted before the first epoch ended)")
    best, _, best_state = load_trained(str(best_path), device)
    t0 = time.perf_counter()
    test_acc, pred, _ = evaluate(best, test_x, test_y, args.final_points, args.eval_batch_size, seed=args.seed + 1)
    eval_s = time.perf_counter() - t0
    rows = log.rows()
    metrics = {
        "test_accuracy": test_acc, "task": task, "model": args.model, "best_epoch": int(best_state["step"]),
        "epochs_trained": len(rows), "final_points": min(args.final_points, P), "train_points": args.num_points,
        "train_time_s": t_train, "final_eval_time_s": eval_s, "num_train": n_train, "num_test": len(test_x),
        "data": spec.label(task), "data_source": spec.source, "parameters": sum(p.numel() for p in model.parameters()),
        "train_clouds_per_s": clouds_seen / max(t_train, 1e-9),
    }
    if rows:
        metrics["last_epoch_test_accuracy"] = rows[-1].get("acc/test")
    if task == "cls":
        for c, name in enumerate(("chair", "vase", "lamp")):
            m = test_y == c
            metrics[f"test_accuracy_{name}"] = float((pred[m] == c).double().mean()) if m.any() else float("nan")
        if args.baseline:
            metrics.update(fit_bbox_baseline(train_np, train_lab, test_np, test_lab))
    metrics["checks"] = {"test_accuracy": accuracy_check(task, test_acc, len(test_x), metrics["final_points"], args.model)}
    report(out, metrics, [ckpts.directory, out / "log.csv", curves])
    return 0


if __name__ == "__main__":
    run_cli(main)
