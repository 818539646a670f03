"""Train PointNet (or PointNet++, or a Transformer) for classification or part segmentation.

    python -m a5_pointnet.train --task cls                       # course settings: 250 epochs, batch 32, lr 1e-3
    python -m a5_pointnet.train --task seg --model pointnet2
    python -m a5_pointnet.train --task cls --model transformer           # global self-attention (Q4)
    python -m a5_pointnet.train --task seg --model point_transformer     # kNN vector attention (Q4)
    python -m a5_pointnet.train --task cls --quick               # a few CPU minutes: half width, 512 points, 4 epochs
    python -m a5_pointnet.train --task cls --resume              # continue from the newest intact checkpoint
    torchrun --nproc_per_node 2 -m a5_pointnet.train --task cls  # data-parallel: 2 processes (GPUs, or CPU)

Data: the course's ``a5/{cls,seg}/*.npy`` under the data root (or --data_path) when present, else
the procedural chairs/vases/lamps (generated once into --cache_dir). Each training step uses a
fresh random subset of ``--num_points`` points of every cloud; after every epoch the test accuracy
is measured on ``--eval_points`` points per cloud. Writes into --output_dir (default
output/a5_pointnet/<task>, or <task>_<model>): ``checkpoints/`` (ckpt_<epoch>.pt every
--save_every epochs, best.pt = best test accuracy, last.pt), ``losses.csv`` and ``curves.png``
(loss and accuracies per epoch), and ``metrics.json`` with ``test_accuracy`` = the best
checkpoint's accuracy on the whole test split at ``--final_points`` points per cloud (the course's
10000), checked against 0.90 (cls) or 0.80 (seg) for ``python -m l3d.report --check``.

A new run into a folder that holds a previous run's results replaces them only once its first
checkpoint is written (the previous ones move to ``.previous/``); a run that stops before that
(bad data, a loss that became NaN) leaves them as they were. A second run into a folder in use
stops with one line. Ctrl-C (or SIGTERM) saves a checkpoint after the current batch; --resume
then continues with the next epoch (the same --task, --model and model settings).

Under torchrun each of N processes (one per GPU, nccl; or CPU processes, gloo) takes every N-th
cloud of each global batch of --batch_size clouds; gradients are averaged and batch norm is
synchronised, so the run follows the one-process run. Rank 0 alone writes; --resume continues on
any number of processes; a process that dies stops the job with one line and the last checkpoint
intact. L3D_DIST_TIMEOUT (seconds, default 600) bounds a collective's wait for the others.

The global Transformer keeps the attention probabilities of every layer for the backward pass
(clouds x heads x points^2 numbers), so its own defaults train on 1024 points per cloud for 100
epochs (the course's run); it evaluates at 10000 points in bounded memory (see
:mod:`a5_pointnet.transformer`).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

import torch
import torch.nn.functional as F

from l3d import distributed
from l3d.cli import ScriptParser, nonneg_int, positive_float, positive_int, report, run_cli, script_parser
from l3d.errors import UserError, user_error
from l3d.run import LOSS_LOG, CheckpointManager, RunDir, check_finite, check_finite_params, check_same_config
from l3d.train import graceful_interrupt, progress, seed_everything

from .baseline import fit_bbox_baseline
from .common import load_trained, predict, random_subsets, retain_freed_memory, take_subsets
from .data import NUM_CLASSES, QUICK_SIZES, add_data_flags, load_split, resolve_data
from .models import ARCHS, ModelConfig, build_model
from .transformer import embedding_width
from .targets import accuracy_check

#: the course's settings (the parser's defaults)
FULL = {"num_epochs": 250, "batch_size": 32, "num_points": 10000, "eval_points": 10000, "width": 1.0,
        "schedule": "constant", "sa_points": [512, 128], "sa_samples": [32, 64]}
_QUICK_PN = {"num_points": 512, "eval_points": 512, "width": 0.5, "schedule": "cosine"}
_QUICK_PN2 = {**_QUICK_PN, "sa_points": [128, 32], "sa_samples": [16, 16]}
_QUICK_PT = {**_QUICK_PN, "sa_points": [256, 64, 16]}
#: defaults of a model that differ from FULL (the global Transformer's training memory grows as points^2)
MODEL_DEFAULTS = {"transformer": {"num_points": 1024, "num_epochs": 100},
                  "point_transformer": {"sa_points": [512, 128, 32]}}
#: the --quick preset of each (task, model); flags the user gives win
QUICK = {
    ("cls", "pointnet"): {**_QUICK_PN, "num_epochs": 4},
    ("seg", "pointnet"): {**_QUICK_PN, "num_epochs": 6, "batch_size": 8},
    ("cls", "pointnet2"): {**_QUICK_PN2, "num_epochs": 4},
    ("seg", "pointnet2"): {**_QUICK_PN2, "num_epochs": 6, "batch_size": 8},
    ("cls", "transformer"): {**_QUICK_PN, "num_epochs": 4},
    ("seg", "transformer"): {**_QUICK_PN, "num_epochs": 6, "batch_size": 8},
    ("cls", "point_transformer"): {**_QUICK_PT, "num_epochs": 4},
    ("seg", "point_transformer"): {**_QUICK_PT, "num_epochs": 6, "batch_size": 8},
}
for (_task, _model), _preset in QUICK.items():  # the smaller procedural data set of the quick runs
    _preset["num_train"], _preset["num_test"] = QUICK_SIZES[_task]
#: the model settings a resumed run must share with its checkpoint (PointNet has no set abstraction)
_BASE_KEYS = ("task", "arch", "num_classes", "width", "dropout")
CONFIG_KEYS = {"pointnet": _BASE_KEYS,
               "pointnet2": (*_BASE_KEYS, "sa_points", "sa_radius", "sa_samples"),
               "transformer": (*_BASE_KEYS, "depth", "heads"),
               "point_transformer": (*_BASE_KEYS, "sa_points", "neighbors")}


def default_output_dir(task: str, model: str) -> str:
    return f"a5_pointnet/{task}" + ("" if model == "pointnet" else f"_{model}")


def build_parser(task: Optional[str] = None, model: Optional[str] = None) -> ScriptParser:
    """The parser of ``train``; with ``task`` and ``model`` its ``--quick`` preset and default output
    folder are theirs (without: the help's generic view, cls/pointnet's preset)."""
    known = task in NUM_CLASSES and model in ARCHS
    output = default_output_dir(task, model) if known else "a5_pointnet/<task>[_<model>]"
    ap = script_parser(__doc__, output, presets={"quick": QUICK[(task, model) if known else ("cls", "pointnet")]})
    ap.add_argument("--task", choices=["cls", "seg"], default="cls",
                    help="classification (3 classes) or segmentation (6 parts)")
    ap.add_argument("--model", choices=ARCHS, default="pointnet",
                    help="pointnet; pointnet2 = PointNet++ with farthest-point sampling and ball query (locality); "
                         "transformer = global self-attention over all points; point_transformer = vector attention "
                         "over k-nearest neighbourhoods with farthest-point downsampling")
    ap.add_flag("num_epochs", default=FULL["num_epochs"], help="epochs (transformer: 100; --quick: cls 4, seg 6)")
    ap.add_flag("batch_size", default=FULL["batch_size"], help="clouds per step (--quick seg: 8)")
    ap.add_flag("lr", default=1e-3, help="Adam learning rate")
    ap.add_argument("--schedule", choices=["constant", "cosine"], default=FULL["schedule"],
                    help="learning-rate schedule over the epochs (--quick: cosine)")
    ap.add_flag("num_points", default=FULL["num_points"],
                help="points per cloud in each training step, a fresh random subset (transformer: 1024; --quick: 512)")
    ap.add_argument("--eval_points", type=positive_int, default=FULL["eval_points"],
                    help="points per cloud for the per-epoch test accuracy (--quick: 512)")
    ap.add_argument("--final_points", type=positive_int, default=10000,
                    help="points per cloud for the final test accuracy of the best checkpoint")
    ap.add_argument("--eval_batch_size", type=positive_int, default=16, help="clouds per forward pass when evaluating")
    ap.add_argument("--bn_batches", type=nonneg_int, default=8,
                    help="before each evaluation, re-estimate the batch-norm statistics of the current weights "
                         "on this many training batches (0: keep the running averages, as the course does)")
    ap.add_flag("tensorboard_image_every", default=1,
                help="epochs between TensorBoard's image of test cloud 0 and its prediction (0: the last epoch only)")
    ap.add_flag("save_every", default=10, help="save ckpt_<epoch>.pt every this many epochs (0: only best/last)")
    ap.add_argument("--keep_last", type=positive_int, default=3, help="periodic checkpoints kept (older ones are deleted)")
    ap.add_flag("resume", help="continue from the newest intact checkpoint in --output_dir (same model settings)")
    ap.add_argument("--baseline", action=argparse.BooleanOptionalAction, default=True,
                    help="cls: also fit and score the bounding-box baseline")
    g = ap.add_argument_group("model")
    g.add_argument("--width", type=positive_float, default=FULL["width"], help="channel multiplier (--quick: 0.5)")
    g.add_argument("--dropout", type=float, default=0.3, help="dropout before the output layer, in [0, 1)")
    g.add_argument("--sa_points", type=positive_int, nargs="+", default=FULL["sa_points"],
                   help="PointNet++ centroids per level (--quick: 128 32); point_transformer: tokens per level, "
                        "the first = farthest-point samples of the cloud (default 512 128 32, --quick: 256 64 16)")
    g.add_argument("--sa_radius", type=positive_float, nargs="+", default=[0.2, 0.4], help="PointNet++ ball radii per level")
    g.add_argument("--sa_samples", type=positive_int, nargs="+", default=FULL["sa_samples"],
                   help="PointNet++ neighbours per ball (--quick: 16 16)")
    g.add_argument("--depth", type=positive_int, default=4, help="transformer: encoder layers")
    g.add_argument("--heads", type=positive_int, default=4,
                   help="transformer: attention heads (must divide the embedding width 128 x --width)")
    g.add_argument("--neighbors", type=positive_int, default=16,
                   help="point_transformer: K of the k-nearest-neighbour attention and downsampling")
    if model in MODEL_DEFAULTS:
        ap.set_defaults(**MODEL_DEFAULTS[model])
    add_data_flags(ap)
    return ap


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Parse once to learn --task and --model (bad flags and --help stop here), then with their
    --quick preset and default output folder; checks what the flags' types cannot."""
    first = build_parser().parse_args(argv)
    args = build_parser(first.task, first.model).parse_args(argv)
    if not 0.0 <= args.dropout < 1.0:
        raise user_error(f"--dropout {args.dropout:g}", "a probability in [0, 1)")
    if args.model == "pointnet2" and not len(args.sa_points) == len(args.sa_radius) == len(args.sa_samples):
        raise user_error(f"--sa_points {len(args.sa_points)} values, --sa_radius {len(args.sa_radius)}, "
                         f"--sa_samples {len(args.sa_samples)}", "one value per PointNet++ level in each")
    if args.model == "transformer" and embedding_width(args.width) % args.heads:
        raise user_error(f"--heads {args.heads}", f"a divisor of the embedding width {embedding_width(args.width)} "
                         f"(128 x --width {args.width:g})")
    return args


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


@torch.no_grad()
def validation_image(model, cloud: torch.Tensor, label: torch.Tensor, task: str, names: Sequence[str],
                     num_points: int, seed: int, image_size: int = 160):
    """(H, W, 3) uint8: test cloud 0 at ``num_points`` points from the turntable's front view. seg:
    the predicted parts beside the true ones; cls: the cloud green when its predicted class is right,
    red when wrong, captioned with both names."""
    from .common import seg_colors, turntable_panels

    idx = random_subsets(1, cloud.shape[0], num_points, seed)
    pts = take_subsets(cloud[None], idx)  # (1, n, 3)
    was_training = model.training
    try:
        pred = predict(model, pts)[0]
    finally:
        model.train(was_training)
    vis = argparse.Namespace(num_frames=1, image_size=image_size, radius=0.01, background=(0.25, 0.25, 0.25))
    p = pts[0].float()
    if task == "seg":
        truth = take_subsets(label[None], idx)[0]
        right = float((pred == truth).float().mean())
        panels = [(p, seg_colors(truth), "ground truth"), (p, seg_colors(pred), f"prediction ({right:.0%} right)")]
    else:
        k_pred, k_true = int(pred), int(label)
        named = [names[k] if 0 <= k < len(names) else f"class {k}" for k in (k_pred, k_true)]
        colour = torch.tensor([0.3, 0.85, 0.3] if k_pred == k_true else [0.95, 0.3, 0.3]).expand(p.shape[0], 3)
        panels = [(p, colour, f"predicted {named[0]}, true {named[1]}")]
    return turntable_panels(panels, vis)[0]


def evaluate(model, points: torch.Tensor, labels: torch.Tensor, num_points: int, batch_size: int, seed: int,
             dist: Optional[distributed.Dist] = None):
    """(accuracy, predictions, subset indices) on ``num_points`` random points per cloud. With
    ``dist`` (several processes) each rank predicts its share of the clouds and the accuracy is
    that of all of them (counts summed over ranks); the predictions are this rank's share."""
    idx = random_subsets(points.shape[0], points.shape[1], num_points, seed)
    if dist is not None and dist.enabled:
        mine = dist.shard(torch.arange(points.shape[0]))
        points, labels, idx = points[mine], labels[mine], (None if idx is None else idx[mine])
    pts = take_subsets(points, idx)
    pred = predict(model, pts, batch_size) if len(pts) else torch.zeros(labels.shape, dtype=torch.long)
    gt = labels if labels.dim() == 1 else take_subsets(labels, idx)
    correct, count = float((pred == gt).sum()), float(gt.numel())
    if dist is not None:
        correct, count = dist.sum([correct, count])
    acc = correct / count if count else float("nan")
    return acc, pred, idx


def model_config(args: argparse.Namespace, num_classes: Optional[int] = None) -> ModelConfig:
    """The model of ``args``; ``num_classes`` (classes for cls, parts for seg) comes from the data set."""
    num_classes = NUM_CLASSES[args.task] if num_classes is None else num_classes
    return ModelConfig(task=args.task, arch=args.model, num_classes=num_classes, width=args.width,
                       dropout=args.dropout, sa_points=tuple(args.sa_points), sa_radius=tuple(args.sa_radius),
                       sa_samples=tuple(args.sa_samples), depth=args.depth, heads=args.heads,
                       neighbors=args.neighbors)


def main(argv=None):
    args = parse_args(argv)
    retain_freed_memory()
    with distributed.session(args.device) as dist:  # one process, or one of torchrun's
        return _main(args, dist)


def _main(args: argparse.Namespace, dist: distributed.Dist) -> int:
    device = dist.device
    dist.check_batch(args.batch_size)
    seed_everything(args.seed)
    cfg = model_config(args)  # its class count is set from the data below
    saved = None
    with dist.run_dir(args.output_dir, fresh=not args.resume) as run:  # rank 0 writes; the others only read
        ckpts = dist.checkpoints(run.path("checkpoints"), every=args.save_every, keep_last=args.keep_last,
                                 mode="max", run=run)
        state = None
        if args.resume:
            state = ckpts.resume()
            if state is None:
                print(f"note: no checkpoint in {ckpts.directory}; starting from scratch", file=sys.stderr)
            else:
                saved = state.get("config", state.get("model_config"))
                try:
                    saved = ModelConfig.from_dict(saved).to_dict()
                except (TypeError, ValueError, AttributeError):  # not a model configuration
                    raise user_error(ckpts.directory, "Assignment 5 checkpoints (with a model 'config' entry)",
                                     f"entries {sorted(map(str, state))[:6]}") from None
                # the settings first, before any data is generated or converted; the class count once it is known
                check_same_config(saved, cfg.to_dict(), ckpts.directory,
                                  tuple(k for k in CONFIG_KEYS[args.model] if k != "num_classes"))
        if dist.enabled:  # every rank resumes from the same checkpoint
            dist.check_same(None if state is None else int(state["step"]), "the checkpoint step to resume from")
        with dist.main_first():  # rank 0 generates or converts the data once
            spec = resolve_data(args.task, args.data, args.data_path, args.cache_dir, args.num_train,
                                args.num_test, args.data_seed, quick=False)
        cfg = model_config(args, spec.classes(args.task))
        if saved is not None:
            check_same_config(saved, cfg.to_dict(), ckpts.directory, ("num_classes",))
        return train(args, cfg, spec, run, ckpts, state, device, dist)


def train(args: argparse.Namespace, cfg: ModelConfig, spec, run: RunDir, ckpts: CheckpointManager,
          state: Optional[dict], device: torch.device, dist: Optional[distributed.Dist] = None) -> int:
    """Train, then (rank 0) evaluate the best checkpoint and write the metrics. With several
    processes every global batch of --batch_size clouds is split across the ranks (rows rank,
    rank + N, ...), gradients are averaged by DistributedDataParallel and batch norm is
    synchronised, so the run follows the one-process run; the other ranks return after training."""
    dist = dist or distributed.current()
    task = args.task
    train_np, train_lab = load_split(spec.root, task, "train")
    test_np, test_lab = load_split(spec.root, task, "test")
    train_x, train_y = torch.from_numpy(train_np), torch.from_numpy(train_lab)
    test_x, test_y = torch.from_numpy(test_np), torch.from_numpy(test_lab)
    P = train_x.shape[1]

    model = build_model(cfg).to(device)
    optim = torch.optim.Adam(model.parameters(), lr=args.lr)
    start = 0
    if state is not None:
        model.load_state_dict(state["model"])
        optim.load_state_dict(state.get("optimizer", state.get("optim")))
        start = int(state["step"]) + 1
        if dist.is_main:
            print(f"resuming after epoch {start} from {ckpts.directory} (step {state['step']})", file=sys.stderr)
    net = dist.wrap(model)  # DistributedDataParallel with several processes; `model` stays the plain one
    if dist.rank:  # dropout masks differ between ranks (rank 0 draws as one process does)
        torch.manual_seed(dist.seed(args.seed))
    log = dist.loss_log(run, run.path(LOSS_LOG), append=start > 0)
    if start > 0:
        log.rewind(start - 1)
    saved_args = {k: v for k, v in vars(args).items() if k != "given"}

    def state_dict(epoch_done: int, partial: bool = False) -> dict:
        return {"model": model.state_dict(), "optimizer": optim.state_dict(), "config": cfg.to_dict(),
                "data": spec.to_dict(), "args": saved_args, "epoch": epoch_done, "partial_epoch": partial}

    def save(epoch: int, metric: Optional[float] = None, partial: bool = False) -> Path:
        check_finite_params(model, step)  # a non-finite model is never written, the step is named
        return ckpts.save(epoch, state_dict(epoch, partial), metric=metric)

    g = torch.Generator().manual_seed(args.seed)
    g.manual_seed(args.seed * 1000003 + start)  # resumed runs draw fresh batches
    n_train = len(train_x)
    t_train, clouds_seen = 0.0, 0
    step = start * math.ceil(n_train / args.batch_size)
    quiet = None if dist.is_main else True  # progress bars of rank 0 only
    with graceful_interrupt(message=dist.is_main) as stop:
        for epoch in progress(range(start, args.num_epochs), "epochs", disable=True if args.num_epochs < 2 else quiet):
            for group in optim.param_groups:
                group["lr"] = lr_at(args, epoch)
            net.train()
            t0 = time.perf_counter()
            perm = torch.randperm(n_train, generator=g)  # the same on every rank: the global batches
            loss_sum, correct, count, clouds = 0.0, 0, 0, 0
            stopping = False
            for s in progress(range(0, n_train, args.batch_size), f"epoch {epoch}", leave=False, disable=quiet):
                idx = perm[s:s + args.batch_size]
                if len(idx) < max(2, dist.world_size) and n_train >= 2:  # batch norm needs two clouds, each rank one
                    continue
                sub = random_subsets(len(idx), P, args.num_points, int(torch.randint(0, 2**31, (1,), generator=g)))
                mine = dist.shard(torch.arange(len(idx)))  # this rank's rows of the global batch
                sub_mine = None if sub is None else sub[mine]
                pts = take_subsets(train_x[idx[mine]], sub_mine).to(device)
                lab = train_y[idx[mine]] if task == "cls" else take_subsets(train_y[idx[mine]], sub_mine)
                lab = lab.to(device)
                dist.fault_point(step)
                logits = net(pts)
                loss = F.cross_entropy(logits.reshape(-1, cfg.num_classes), lab.reshape(-1))
                check_finite(loss, step, name=f"training loss (epoch {epoch})")
                optim.zero_grad(set_to_none=True)
                dist.scale_loss(loss, len(mine), len(idx)).backward()  # DDP averages: the global batch's mean
                optim.step()
                step += 1
                loss_sum += loss.item() * len(mine)
                correct += int((logits.argmax(-1) == lab).sum())
                count += lab.numel()
                clouds += len(idx)
                if dist.any(stop.requested):  # every rank stops after the same step
                    stopping = True
                    break
            loss_sum, correct, count = dist.sum([loss_sum, correct, count])
            t_train += time.perf_counter() - t0
            clouds_seen += clouds
            if stopping:
                path = save(epoch, partial=True)
                print(f"interrupted: saved {path}; --resume continues with epoch {epoch + 1}", file=sys.stderr)
                break
            if args.bn_batches > 0:
                recal = perm[: args.bn_batches * args.batch_size].split(args.batch_size)
                # each rank its rows of every batch: synchronised batch norm sees the global batch
                recalibrate_batch_norm(model, (dist.shard(take_subsets(train_x[i], random_subsets(
                    len(i), P, args.num_points, args.seed + k))).to(device)
                    for k, i in enumerate(recal) if len(i) >= max(2, dist.world_size)))
            test_acc, _, _ = evaluate(model, test_x, test_y, args.eval_points, args.eval_batch_size, seed=args.seed,
                                      dist=dist)
            row = {"train_loss": loss_sum / max(1, clouds),
                   "acc/train": correct / max(1, count), "acc/test": test_acc, "lr": lr_at(args, epoch),
                   "epoch_time_s": time.perf_counter() - t0}
            log.append(epoch, row)
            if log.image_due(epoch, args.tensorboard_image_every, args.num_epochs):  # rank 0 only
                log.image(epoch, "val/test_cloud_0", validation_image(model, test_x[0], test_y[0], task, spec.names(task),
                                                                      args.eval_points, args.seed))
            if dist.is_main:
                print(f"epoch {epoch}: loss {row['train_loss']:.4f}, train acc {row['acc/train']:.4f}, "
                      f"test acc {test_acc:.4f} ({row['epoch_time_s']:.1f} s)", flush=True)
            if ckpts.is_better(test_acc) or ckpts.due(epoch) or epoch == args.num_epochs - 1:
                save(epoch, metric=test_acc)  # rank 0 writes; the other ranks' managers write nothing
    curves = log.plot(run.path("curves.png"), groups=[["train_loss"], ["acc/train", "acc/test"], ["lr"]],
                      title=f"{task} {args.model}", xlabel="epoch")

    # final: the best checkpoint on the whole test split at --final_points points per cloud (each rank
    # its share of the clouds, once rank 0's last checkpoint is on disk)
    dist.barrier()
    best_path = ckpts.best_path if ckpts.best_path.is_file() else ckpts.last_path
    if not best_path.is_file():
        raise UserError("no checkpoint was written (interrupted before the first epoch ended)")
    best, _, best_state = load_trained(str(best_path), device)
    t0 = time.perf_counter()
    test_acc, pred, _ = evaluate(best, test_x, test_y, args.final_points, args.eval_batch_size, seed=args.seed + 1,
                                 dist=dist)
    eval_s = time.perf_counter() - t0
    if task == "cls":  # per-class counts of correct and of all test clouds, summed over the ranks
        y_mine, classes = dist.shard(test_y), spec.classes("cls")
        sums = dist.sum([float(((pred == c) & (y_mine == c)).sum()) for c in range(classes)]
                        + [float((y_mine == c).sum()) for c in range(classes)])
        per_class = {c: (sums[c], sums[classes + c]) for c in range(classes)}
    if not dist.is_main:
        return 0  # rank 0 writes the results
    rows = log.rows()
    metrics = {
        "test_accuracy": test_acc, "task": task, "model": args.model, "best_epoch": int(best_state["step"]),
        "epochs_trained": len(rows), "final_points": min(args.final_points, P), "train_points": args.num_points,
        "train_time_s": t_train, "final_eval_time_s": eval_s, "num_train": n_train, "num_test": len(test_x),
        "data": spec.label(task), "data_source": spec.source, "parameters": sum(p.numel() for p in model.parameters()),
        "train_clouds_per_s": clouds_seen / max(t_train, 1e-9), "processes": dist.world_size,
    }
    if rows:
        metrics["last_epoch_test_accuracy"] = rows[-1].get("acc/test")
    if task == "cls":
        for c, name in enumerate(spec.names("cls")):
            right, total = per_class[c]
            if total:  # classes without test clouds are left out (a subset of a 40-class release)
                metrics[f"test_accuracy_{name}"] = right / total
        if args.baseline:
            metrics.update(fit_bbox_baseline(train_np, train_lab, test_np, test_lab, num_classes=spec.classes("cls")))
    metrics["checks"] = {"test_accuracy": accuracy_check(task, test_acc, len(test_x), metrics["final_points"], args.model)}
    report(run.path(), metrics, [ckpts.directory, log.path, curves])
    return 0


if __name__ == "__main__":
    run_cli(main)
