"""Q2: train an image -> 3D model (voxels, points, mesh, or the Q3.1 implicit occupancy network).

    python -m a2_single_view.train_model --type vox|point|mesh|implicit [--load_feat] [--steps 10000]
    torchrun --nproc_per_node 2 -m a2_single_view.train_model --type vox    # data-parallel: 2 processes

A ResNet-18 encoder (ImageNet weights from the local torch cache when present, else random
initialisation, said in one line) feeds one decoder (a2_single_view/models.py). Losses:
vox -- BCE on the 32^3 logits; point -- chamfer between the predicted points and num_points
sampled on the ground-truth mesh; mesh -- w_chamfer * chamfer (num_points sampled on both meshes)
+ w_smooth * uniform Laplacian; implicit -- BCE of occupancies at n_queries points (half near
the surface). ``--load_feat`` trains the decoder on precomputed encoder features (computed once
into feats.npy when missing) instead of images: much faster on a CPU. ``--mean_shape`` feeds a
constant input instead, which trains the best constant prediction: the mean-shape baseline.

--quick trains a small model that still generalises to held-out shapes: the "quick" procedural
preset (384 training chairs, one view each), a few hundred steps at a larger learning rate decaying
along a cosine (QUICK below), and with --baseline on: the mean-shape decoder is trained too.

Writes to --output_dir (default output/a2_single_view/train_<type>): checkpoints/ckpt_<step>.pt
and last.pt ({step, model, optimizer, config}) every --save_every steps, at the end and on
Ctrl-C or SIGTERM; losses.csv and loss_<type>.png; metrics.json. ``--resume`` continues from the
newest intact checkpoint there (the same --type and model sizes); ``--load_checkpoint PATH``
continues from a given one. The folder is locked while a run writes into it, and a fresh run
keeps the previous results until its first checkpoint: a run that diverges (NaN or exploding
loss) stops with one line and leaves them as they were. With --baseline, the
same decoder trained on a constant input (the best single shape it can learn: the baseline
eval_model compares against) goes to <output_dir>/mean_shape/ the same way.

Under torchrun each of N processes (one per GPU, or CPU processes) takes every N-th image of each
global batch of --batch_size images; gradients are averaged and batch norm is synchronised. Rank 0
alone writes; --resume continues on any number of processes; a process that dies stops the job
with one line and the last checkpoint intact.
"""

from __future__ import annotations

import argparse
import copy
import math
import sys
import time
from pathlib import Path

import torch

from l3d import distributed
from l3d.cli import nonneg_float, nonneg_int, positive_float, positive_int, report, run_cli, script_parser
from l3d.errors import user_error
from l3d.ops import sample_points_from_meshes
from l3d.run import LOSS_LOG, LOSS_PLOT, check_finite, check_finite_params, check_same_config, load_checkpoint
from l3d.train import graceful_interrupt, progress, seed_everything

from .common import add_data_flags, data_text, given_or, gt_points, occupancy_queries, resolve_data, to_device
from .data import R2N2, collate
from .features import ensure_features
from .losses import chamfer_loss, voxel_loss
from .models import FEAT_DIM, KINDS, Encoder, SingleViewTo3D, adam

# settings a checkpoint records so that eval_model can rebuild the model
CONFIG_KEYS = ("type", "num_points", "load_feat", "mean_shape", "pretrained", "classes", "w_smooth", "w_chamfer",
               "ico_level", "vox_width", "implicit_hidden")
# what a resumed run must share with its checkpoint: the model's architecture and inputs
MODEL_KEYS = ("type", "load_feat", "mean_shape", "ico_level", "vox_width", "implicit_hidden")
# --quick: steps, batch size, (peak) learning rate (decaying to zero along a cosine) and sizes of each
# type, and the steps of its mean-shape baseline (a constant decoder converges in far fewer steps)
QUICK = {
    "vox": {"steps": 150, "batch_size": 8, "lr": 4e-3, "vox_width": 0.5, "baseline_steps": 60},
    "point": {"steps": 400, "batch_size": 8, "lr": 1e-3, "baseline_steps": 100},
    "mesh": {"steps": 400, "batch_size": 8, "lr": 1e-3, "ico_level": 3, "baseline_steps": 200},
    "implicit": {"steps": 150, "batch_size": 8, "lr": 2e-3, "implicit_hidden": 128, "n_queries": 1024,
                 "baseline_steps": 60},
}
# --quick settings shared by every type (the parser's preset; the per-type ones follow --type)
QUICK_ALL = {"schedule": "cosine", "log_freq": 10, "data_preset": "quick", "baseline": True}
# training settings a checkpoint records too (what a study reusing it must share)
TRAINING_KEYS = ("steps", "batch_size", "lr", "schedule", "n_queries", "seed", "preset", "init_from")


def build_parser(doc: str = __doc__) -> argparse.ArgumentParser:
    ap = script_parser(doc, "a2_single_view/train_<type>", presets={"quick": QUICK_ALL})
    ap.add_argument("--type", choices=KINDS, default="vox", help="what the decoder predicts")
    ap.add_flag("steps", default=10000, help="training steps (--quick: per type, see QUICK)")
    ap.add_flag("batch_size", default=32, help="images per step (at least 2; --quick: per type)")
    ap.add_flag("lr", default=4e-4, help="Adam learning rate (--quick: per type)")
    ap.add_argument("--schedule", choices=["constant", "cosine"], default="constant",
                    help="learning rate schedule over --steps (--quick: cosine to zero)")
    ap.add_flag("num_points", default=1000, help="points predicted (point) / sampled for chamfer")
    ap.add_argument("--w_chamfer", type=nonneg_float, default=1.0, help="weight of the chamfer loss (mesh)")
    ap.add_argument("--w_smooth", type=nonneg_float, default=0.1, help="weight of the Laplacian smoothing loss (mesh)")
    ap.add_argument("--n_queries", type=positive_int, default=4096,
                    help="occupancy queries per image (implicit; --quick 1024)")
    ap.add_argument("--ico_level", type=nonneg_int, default=4,
                    help="subdivisions of the mesh decoder's ico-sphere (4: 2562 vertices; --quick 3: 642)")
    ap.add_argument("--vox_width", type=positive_float, default=1.0,
                    help="channel multiplier of the voxel decoder (1: 128-64-32-8; --quick 0.5)")
    ap.add_argument("--implicit_hidden", type=positive_int, default=256,
                    help="width of the implicit decoder (--quick 128)")
    ap.add_argument("--init_from", default=None,
                    help="start the decoder from this checkpoint's decoder where layer names and shapes match "
                         "(e.g. the mesh decoder from a trained point decoder: the same fully connected trunk)")
    ap.add_argument("--baseline_steps", type=positive_int, default=None,
                    help="training steps of the --baseline model (default --steps; --quick: fewer, see QUICK)")
    ap.add_flag("save_every", default=2000)
    ap.add_argument("--log_freq", type=positive_int, default=50, help="loss log row every this many steps (--quick 10)")
    ap.add_flag("tensorboard_image_every", default=500,
                help="steps between TensorBoard's validation image: training image 0, its prediction and the ground "
                     "truth (the last step always logs one; 0: the last step only)")
    ap.add_flag("load_checkpoint", nargs="?", const=True,
                help="continue from this checkpoint file (alone, as in the course: from the newest checkpoint "
                     "in --output_dir, like --resume)")
    ap.add_flag("resume")
    ap.add_argument("--load_feat", action="store_true",
                    help="train on precomputed ResNet-18 features (feats.npy; computed once when missing)")
    ap.add_argument("--mean_shape", action="store_true",
                    help="constant input instead of the image: trains the mean-shape baseline")
    ap.add_argument("--baseline", action=argparse.BooleanOptionalAction, default=False,
                    help="also train the mean-shape baseline (the same decoder and settings on a constant input) "
                         "into <output_dir>/mean_shape (--quick: on, unless --mean_shape)")
    ap.add_argument("--pretrained", choices=["auto", "imagenet", "random"], default="auto",
                    help="ResNet-18 weights: ImageNet from the local torch cache when present (auto), or random")
    ap.add_argument("--num_workers", type=nonneg_int, default=0, help="data loader worker processes")
    add_data_flags(ap)
    return ap


def finish_args(args: argparse.Namespace) -> argparse.Namespace:
    """The --quick sizes of --type (flags the user gave win), defaults that follow other flags;
    combinations of flags that cannot work."""
    if args.output_dir == "output/a2_single_view/train_<type>":
        args.output_dir = f"output/a2_single_view/train_{args.type}"
    if args.quick:
        given_or(args, QUICK[args.type])
        if args.mean_shape:
            given_or(args, {"baseline": False})
    if args.baseline_steps is None:
        args.baseline_steps = args.steps
    if args.load_checkpoint is True:  # the course's bare --load_checkpoint
        args.load_checkpoint, args.resume = None, True
    if args.batch_size < 2:
        raise user_error("--batch_size", "at least 2 (the decoders normalise their input with BatchNorm)",
                         args.batch_size)
    if args.load_feat and args.mean_shape:
        raise user_error("--load_feat", "no --mean_shape with it (they exclude each other)", "both")
    if args.baseline and args.mean_shape:
        raise user_error("--baseline", "a run of the image model (it trains a mean-shape model beside it)",
                         "--mean_shape", "use --no-baseline")
    if args.resume and args.load_checkpoint:
        raise user_error("--load_checkpoint", "either --resume or --load_checkpoint PATH", "both")
    return args


def lr_at(args, step: int) -> float:
    """Learning rate of a step: --lr, or (cosine) --lr * (1 + cos(pi step / steps)) / 2."""
    if args.schedule == "cosine":
        return args.lr * 0.5 * (1.0 + math.cos(math.pi * min(step, args.steps) / args.steps))
    return args.lr


def model_inputs(args) -> str:
    return "feats" if args.load_feat else ("none" if args.mean_shape else "images")


def build_model(cfg: dict, verbose: bool = True) -> SingleViewTo3D:
    """The model a config (``CONFIG_KEYS``) describes."""
    use_encoder = not (cfg.get("load_feat") or cfg.get("mean_shape"))
    return SingleViewTo3D(cfg["type"], n_points=cfg.get("num_points", cfg.get("n_points", 1000)), use_encoder=use_encoder,
                          pretrained=cfg.get("pretrained", "auto"), verbose=verbose,
                          ico_level=cfg.get("ico_level") or 4, vox_width=cfg.get("vox_width") or 1.0,
                          implicit_hidden=cfg.get("implicit_hidden") or 256)


def init_decoder_from(model: SingleViewTo3D, path) -> list:
    """Copy into ``model.decoder`` every tensor of the checkpoint's decoder with the same name and
    shape; returns the names copied (an error when nothing matches)."""
    state = load_checkpoint(path, map_location="cpu")
    src = {k[len("decoder."):]: v for k, v in state.get("model", {}).items() if k.startswith("decoder.")}
    dst = model.decoder.state_dict()
    copied = [k for k, v in src.items() if k in dst and dst[k].shape == v.shape]
    if not copied:
        raise user_error(path, f"decoder layers with the names and shapes of the {model.kind} decoder's",
                         "none", "--init_from needs a train_model checkpoint with a compatible decoder")
    model.decoder.load_state_dict({**dst, **{k: src[k] for k in copied}})
    return copied


def forward(model: SingleViewTo3D, batch: dict, queries=None) -> torch.Tensor:
    """Run the model (or its DistributedDataParallel wrapper) on a collated batch (images,
    precomputed feats, or a constant input)."""
    inner = distributed.Dist.unwrap(model)
    if "feats" in batch:
        return model(feats=batch["feats"], queries=queries)
    if "images" in batch and inner.encoder is not None:
        return model(images=batch["images"], queries=queries)
    # constant input: every row of the batch is the same, so the decoder runs on two rows (its
    # BatchNorm needs two) and the first is repeated -- the same values and gradients as running
    # all b rows, for a fraction of the cost
    b = len(batch["verts"])
    ref = next(inner.decoder.parameters())
    const = torch.zeros(2, FEAT_DIM, device=ref.device, dtype=ref.dtype)
    if queries is None:
        out = model(feats=const)
        return out[:1].expand(b, *out.shape[1:])
    # implicit: the queries differ per row, the feature does not
    return model(feats=const[:1].expand(b, -1), queries=queries)


@torch.no_grad()
def log_validation_image(log, model: SingleViewTo3D, ds: R2N2, device, step: int, image_size: int = 96) -> None:
    """TensorBoard image ``val/train_image_0``: training image 0 | the prediction | its ground truth
    in the prediction's representation, seen from the input camera (``eval_model``'s panels)."""
    from .eval_model import example_frames  # (eval_model imports this module)

    was_training = model.training
    model.eval()
    try:
        frame = example_frames(model, ds, 0, device, num_frames=1, image_size=image_size)[0]
    finally:
        model.train(was_training)
    log.image(step, "val/train_image_0", frame)


def compute_loss(model: SingleViewTo3D, batch: dict, args, generator=None) -> dict:
    """The training loss of one batch: {"loss": total, and its named terms}. ``model`` may be
    wrapped in DistributedDataParallel."""
    inner = distributed.Dist.unwrap(model)
    kind = inner.kind
    if kind == "vox":
        loss = voxel_loss(forward(model, batch), batch["voxels"])
        return {"loss": loss}
    if kind == "implicit":
        q, lab = occupancy_queries(batch["voxels"], args.n_queries, generator)
        loss = voxel_loss(forward(model, batch, queries=q), lab)
        return {"loss": loss}
    gt = gt_points(batch, args.num_points, generator)
    if kind == "point":
        loss = chamfer_loss(forward(model, batch), gt)
        return {"loss": loss}
    verts = forward(model, batch)
    meshes = inner.decoder.meshes(verts)
    pred = sample_points_from_meshes(meshes, args.num_points, generator=generator)
    lc, ls = chamfer_loss(pred, gt), inner.decoder.smoothness(verts)  # = smoothness_loss(meshes)
    return {"loss": args.w_chamfer * lc + args.w_smooth * ls, "chamfer": lc, "smooth": ls}


def infinite(loader):
    while True:
        yield from loader


def model_config(args, encoder_tag) -> dict:
    """What the checkpoint records: the model (CONFIG_KEYS), the training settings, the encoder."""
    cfg = {k: getattr(args, k) for k in CONFIG_KEYS + TRAINING_KEYS if k != "preset"}
    cfg["preset"] = args.data_preset
    cfg["encoder"] = encoder_tag
    return cfg


def resume_keys(cfg: dict) -> tuple:
    """The config keys a resumed run must share with its checkpoint (and, with --load_feat, the
    encoder of the features)."""
    return MODEL_KEYS + (("num_points",) if cfg["type"] == "point" else ())


def restore(state: dict, where, model, optim, cfg: dict, with_encoder: bool = True) -> int:
    """Load a checkpoint into the model and optimiser after checking it fits; returns its step."""
    missing = [k for k in ("model", "optimizer", "config", "step") if k not in state]
    if missing:
        raise user_error(where, "a train_model checkpoint (model, optimizer, config, step)",
                         f"no {', '.join(missing)}")
    if not isinstance(state["config"], dict):
        raise user_error(where, "a train_model checkpoint (its config a dict)", type(state["config"]).__name__)
    check_same_config(state["config"], cfg, where, resume_keys(cfg) + (("encoder",) if with_encoder else ()))
    try:
        model.load_state_dict(state["model"])
        optim.load_state_dict(state["optimizer"])
    except (RuntimeError, ValueError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else type(exc).__name__
        raise user_error(where, "weights that fit the model its config describes", first) from None
    return int(state["step"])


def train(args: argparse.Namespace) -> dict:
    """Train as the flags say; returns the metrics written to metrics.json (and paths).

    Under torchrun (several processes) every global batch of --batch_size images is split across
    the ranks (rows rank, rank + N, ...), gradients are averaged by DistributedDataParallel and
    batch norm is synchronised; rank 0 alone writes the outputs."""
    dist = distributed.current()
    device = dist.device
    dist.check_batch(args.batch_size)
    seed_everything(args.seed)
    with dist.main_first():  # rank 0 generates the synthetic data set once
        choice = resolve_data(args)
    resuming = bool(args.resume)
    # locked; a failed fresh run keeps the old results; ranks other than 0 write nothing
    with dist.run_dir(args.output_dir, fresh=not resuming) as run:
        need_vox = args.type in ("vox", "implicit")
        ds = R2N2(choice.root, choice.split_file, "train", args.class_names, return_voxels=need_vox,
                  inputs=model_inputs(args))
        model = build_model({k: getattr(args, k) for k in CONFIG_KEYS}, verbose=dist.is_main).to(device)
        init = None
        if args.init_from and not resuming and not args.load_checkpoint:
            init = {"from": str(args.init_from), "layers": init_decoder_from(model, args.init_from)}
        optim = adam(model.parameters(), lr=args.lr)
        ckpts = dist.checkpoints(run.path("checkpoints"), every=args.save_every, keep_last=2, run=run)
        start, state, where = 0, None, None
        if args.load_checkpoint:
            where = args.load_checkpoint
            state = load_checkpoint(where, map_location=device)
        elif resuming:
            where = run.path("checkpoints")
            state = ckpts.resume(map_location=device)  # the newest intact, finite checkpoint
            if state is None and dist.is_main:
                print(f"note: no checkpoint in {where}; starting from step 0", file=sys.stderr)
        if state is not None:  # a checkpoint of another model fails here, before any feature is computed
            start = restore(state, where, model, optim, model_config(args, None), with_encoder=False) + 1
        if dist.enabled:  # every rank continues from the same step
            dist.check_same(start, "the step to resume from")
        encoder_tag = model.encoder.tag if model.encoder is not None else None
        if args.load_feat:
            enc = Encoder(args.pretrained, verbose=dist.is_main)
            encoder_tag = enc.tag
            with dist.main_first():  # rank 0 computes and writes the missing features once
                ensure_features(ds, enc, device, verbose=dist.is_main)
            del enc
        cfg = model_config(args, encoder_tag)
        if state is not None and args.load_feat:
            check_same_config(state["config"], cfg, where, ("encoder",))
        log = dist.loss_log(run, run.path(LOSS_LOG), append=state is not None)
        if state is not None:
            log.rewind(start - 1)
        # the global batches (the same seeded shuffle on every rank), each rank its rows of them
        shuffle = torch.Generator().manual_seed(args.seed + start)
        global_batches = torch.utils.data.BatchSampler(torch.utils.data.RandomSampler(ds, generator=shuffle),
                                                       args.batch_size, drop_last=len(ds) > args.batch_size)
        loader = torch.utils.data.DataLoader(ds, batch_sampler=dist.shard_batches(global_batches), collate_fn=collate,
                                             num_workers=args.num_workers, generator=shuffle)
        n_global = min(args.batch_size, len(ds))  # every global batch's size (the last incomplete one is dropped)
        dist.check_batch(n_global, "--batch_size (or the training images)")
        batches = infinite(loader)
        gen = torch.Generator(device=device).manual_seed(dist.seed(args.seed + 1 + start))
        net = dist.wrap(model)  # DistributedDataParallel with several processes; `model` stays the plain one
        net.train()

        def state_fn():
            return {"model": model.state_dict(), "optimizer": optim.state_dict(), "config": cfg}

        t0 = time.perf_counter()
        step, last = start - 1, {}
        stopping = False
        with graceful_interrupt(message=dist.is_main) as stop:  # Ctrl-C / SIGTERM: finish the step, save, stop
            for step in progress(range(start, args.steps), f"train {args.type}", disable=None if dist.is_main else True):
                batch = to_device(next(batches), device)
                n_local = len(batch["verts"])
                for group in optim.param_groups:
                    group["lr"] = lr_at(args, step)
                dist.fault_point(step)
                terms = compute_loss(net, batch, args, gen)
                check_finite(terms["loss"], step)
                optim.zero_grad(set_to_none=True)
                dist.scale_loss(terms["loss"], n_local, n_global).backward()  # DDP averages: the global mean
                optim.step()
                last = {k: float(v.detach()) for k, v in terms.items()}
                if step % args.log_freq == 0 or step == args.steps - 1:
                    last = dist.weighted_mean(last, n_local)  # the global batch's losses
                    log.append(step, last)
                stopping = dist.any(stop.requested)  # every rank stops after the same step
                if log.image_due(step, args.tensorboard_image_every, args.steps, stopping):  # rank 0 only
                    log_validation_image(log, model, ds, device, step)
                if ckpts.due(step) or stopping or step == args.steps - 1:
                    check_finite_params(model, step)
                    ckpts.save(step, state_fn())  # the first save commits the run (rank 0 writes)
                if stopping:
                    break
        elapsed = time.perf_counter() - t0
        last_ckpt = ckpts.last_path  # (a resumed run that was already complete keeps its checkpoint)
        written = [last_ckpt]
        if log.rows():
            written.append(log.plot(run.path(LOSS_PLOT), title=f"train {args.type}"))
        steps = max(0, step - start + 1)
        metrics = {
            "type": args.type, "steps": step + 1, "final_loss": last.get("loss"),
            **{f"final_{k}": v for k, v in last.items() if k != "loss"},
            "train_time_s": elapsed, "time_per_step_s": elapsed / max(steps, 1),
            "train_images": len(ds), "train_models": len(ds.models), "encoder": encoder_tag or "none (constant input)",
            "load_feat": args.load_feat, "mean_shape": args.mean_shape, "batch_size": args.batch_size, "lr": args.lr,
            "schedule": args.schedule, "preset": args.data_preset if choice.synthetic else None, "init_from": init,
            "data": data_text(choice), "classes": args.classes, "checkpoint": str(last_ckpt),
            "interrupted": stopping, "processes": dist.world_size,
        }
        if dist.is_main:
            report(run.path(), metrics, written)
        if args.baseline and not stopping:
            base = copy.copy(args)
            base.mean_shape, base.load_feat, base.baseline = True, False, False
            base.output_dir = str(run.path("mean_shape"))
            base.load_checkpoint = base.init_from = None
            base.steps = args.baseline_steps
            metrics["baseline"] = train(base)
    return metrics


def main(argv=None):
    args = finish_args(build_parser().parse_args(argv))
    with distributed.session(args.device):  # one process, or one of torchrun's
        return train(args)


if __name__ == "__main__":
    run_cli(main)
