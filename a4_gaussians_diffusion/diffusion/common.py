"""Flags, loading, prompt embeddings and bookkeeping shared by the three SDS scripts."""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import re
import resource
import sys
import time
from pathlib import Path
from typing import Any, Dict, Optional

import torch

from l3d.checks import data_label
from l3d.cli import VOCABULARY, nonneg_float, positive_float, positive_int
from l3d.errors import user_error
from l3d.run import atomic_write, check_same_config

from .sds import DEFAULT_MODEL, MemoryOptions, StableDiffusion
from .tiny import PIPELINE_LABEL, is_tiny
from .train_prior import PRIOR_LABEL, is_prior
from .views import view_prompts

TINY_NOTE = """# Tiny-pipeline result

These files were produced with a **tiny, randomly initialised** Stable Diffusion checkpoint
(`a4_gaussians_diffusion/diffusion/tiny.py`), because the real weights
(`stabilityai/stable-diffusion-2-1-base`) cannot be downloaded in this environment. They show that
the whole pipeline runs (rendering, VAE encoding, SDS gradients, optimisation, outputs); the
pictures themselves are **not** what Stable Diffusion would produce. Rerun the same command with
`--model stabilityai/stable-diffusion-2-1-base` (weights in the local Hugging Face cache) for real results.
"""

PRIOR_NOTE = """# Made with the small prior trained here

These files were produced with a **small text-to-image latent diffusion model trained from scratch
here** (`python -m a4_gaussians_diffusion.diffusion.train_prior`) on procedural renders of a few
shapes (cube, sphere, cone, torus, the course cow) in five colours from the front, side and back,
at 32 x 32 pixels. It knows only that small world (prompts such as "a red cube, side view"); it is
not Stable Diffusion. Its answers can be checked with the judge
(`python -m a4_gaussians_diffusion.diffusion.judge`), a classifier trained on the same kind of renders.
"""


def shared_flag(ap, key: str, *more_aliases: str, default: Any = None, help: Optional[str] = None,
                **kwargs) -> argparse.Action:
    """Add the shared flag ``key`` of :data:`l3d.cli.VOCABULARY` to a parser or an argument group,
    with its name, value type, help and aliases, plus ``more_aliases`` (the course's spellings)."""
    spec = VOCABULARY[key]
    if spec.action:
        kwargs.setdefault("action", spec.action)
    elif spec.type is not None:
        kwargs.setdefault("type", spec.type)
    return ap.add_argument(spec.name, *spec.aliases, *more_aliases, dest=key, default=default,
                           help=help or spec.help, **kwargs)


def add_sds_flags(ap: argparse.ArgumentParser, default_guidance: float = 100.0, save_every: int = 500) -> None:
    """The flags every SDS script shares (model, prompts, guidance, precision and memory, resume)."""
    ap.add_argument("--prompt", default="a hamburger", help="text prompt")
    ap.add_argument("--negative_prompt", default="", help="negative / unconditional prompt of classifier-free guidance")
    ap.add_argument("--model", default=DEFAULT_MODEL,
                    help="Stable Diffusion checkpoint: a hub id in the local Hugging Face cache or a diffusers folder "
                         "(never downloaded)")
    ap.add_argument("--guidance_scale", type=positive_float, default=default_guidance,
                    help="classifier-free guidance scale s")
    ap.add_argument("--t_range", type=nonneg_float, nargs=2, default=(0.02, 0.98), metavar=("MIN", "MAX"),
                    help="timesteps t ~ U{int(T MIN) .. int(T MAX)} of the T = 1000 training steps "
                         "(0 <= MIN <= MAX <= 1)")
    add_memory_flags(ap)
    ap.add_argument("--postfix", default="", help="appended to the run's folder name")
    shared_flag(ap, "resume", help="continue from the newest intact checkpoint of the run's folder (the same "
                                   "prompt, model and settings)")
    shared_flag(ap, "save_every", default=save_every,
                help="steps between checkpoints (0: only at the end and on Ctrl-C / SIGTERM)")
    ap.add_argument("--probe_every", type=positive_int, default=10,
                    help="measure every this many iterations how the step moved the latent relative to the SDS "
                         "direction; the mean goes into metrics.json's checks")


def add_memory_flags(ap) -> None:
    """Precision and memory flags of Stable Diffusion (README: "Stable Diffusion on an 8 GB card")."""
    g = ap.add_argument_group("precision and memory (for small GPUs; see MemoryOptions in sds.py)")
    g.add_argument("--precision", choices=["auto", "fp32", "fp16"], default="auto",
                   help="weights of the diffusion model: auto = fp16 on CUDA, fp32 on CPU (fp16 on a CPU device "
                        "is refused: there it is slower and saves nothing that matters)")
    g.add_argument("--fp16", action="store_true",
                   help="the same as --precision fp16: half-precision weights (half the weights' memory; CUDA only)")
    g.add_argument("--attention_slicing", action="store_true",
                   help="compute the UNet's attention in slices of half the head size instead of PyTorch's fused "
                        "attention (which already keeps no attention maps): for setups without fused attention")
    g.add_argument("--vae_slicing", action="store_true",
                   help="VAE encodes / decodes a batch one image at a time (helps only with --batch_size > 1)")
    g.add_argument("--vae_tiling", action="store_true",
                   help="VAE encodes / decodes in overlapping tiles of half the image size (less activation memory "
                        "for the encoder's backward; the latents change slightly at the seams)")
    g.add_argument("--cpu_offload", nargs="?", const="sequential", default="none",
                   choices=["none", "model", "sequential"],
                   help="keep the diffusion weights in CPU memory: 'sequential' (the flag alone) streams every "
                        "sub-module's weights to the GPU for its own forward (lowest GPU memory, slowest); 'model' "
                        "moves whole models (text encoder, UNet, VAE) in turn")


def memory_options(args: argparse.Namespace) -> MemoryOptions:
    """The :class:`MemoryOptions` of the parsed flags."""
    return MemoryOptions(bool(args.attention_slicing), bool(args.vae_slicing), bool(args.vae_tiling),
                         str(args.cpu_offload))


def precision_of(args: argparse.Namespace) -> str:
    """``--precision``, with ``--fp16`` as its shortcut (a contradiction is a UserError)."""
    if getattr(args, "fp16", False):
        if args.precision == "fp32":
            raise user_error("--fp16", "not together with --precision fp32", "both")
        return "fp16"
    return args.precision


def check_sds_flags(args: argparse.Namespace) -> None:
    """The checks of the shared flags that their value types cannot make alone."""
    lo, hi = args.t_range
    if not lo <= hi <= 1.0:
        raise user_error("--t_range", "MIN MAX with 0 <= MIN <= MAX <= 1", f"{lo:g} {hi:g}")


def check_unit_interval(args: argparse.Namespace, *names: str) -> None:
    """Each ``--<name>`` in [0, 1] (UserError naming the flag otherwise)."""
    for name in names:
        v = getattr(args, name)
        if not 0.0 <= v <= 1.0:
            raise user_error(f"--{name}", "a number in [0, 1]", f"{v:g}")


def check_range(args: argparse.Namespace, name: str, lo_min: Optional[float] = None,
                hi_max: Optional[float] = None, open_low: bool = False, open_high: bool = False) -> None:
    """``--<name> LOW HIGH`` with LOW <= HIGH, LOW >= lo_min (> with ``open_low``) and HIGH <= hi_max
    (< with ``open_high``); a UserError naming the flag otherwise."""
    lo, hi = getattr(args, name)
    ok = lo <= hi
    if lo_min is not None:
        ok = ok and (lo > lo_min if open_low else lo >= lo_min)
    if hi_max is not None:
        ok = ok and (hi < hi_max if open_high else hi <= hi_max)
    if not ok:
        bounds = []
        if lo_min is not None:
            bounds.append(f"LOW {'>' if open_low else '>='} {lo_min:g}")
        if hi_max is not None:
            bounds.append(f"HIGH {'<' if open_high else '<='} {hi_max:g}")
        expected = "LOW HIGH with LOW <= HIGH" + (", " + ", ".join(bounds) if bounds else "")
        raise user_error(f"--{name}", expected, f"{lo:g} {hi:g}")


def slug(text: str) -> str:
    """A folder name for a prompt: spaces -> underscores, other unsafe characters dropped."""
    s = re.sub(r"\s+", "_", text.strip())
    s = re.sub(r"[^A-Za-z0-9_.,-]", "", s)
    return (s or "prompt")[:80]


def run_folder(args: argparse.Namespace, suffix: str = "") -> Path:
    """``<output_dir>/<prompt slug><suffix><postfix>``: the run's folder (a :class:`l3d.run.RunDir`
    creates and locks it)."""
    return Path(args.output_dir) / f"{slug(args.prompt)}{suffix}{args.postfix}"


def load_guidance(args: argparse.Namespace, device: torch.device) -> StableDiffusion:
    """The diffusion model named by ``--model`` with the precision and memory flags applied.

    On CUDA the peak-memory counter is reset first, so that ``peak_memory_mb`` in metrics.json is
    this run's own peak (several runs may share one process, e.g. the sweep)."""
    check_sds_flags(args)
    precision = precision_of(args)
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    mem = memory_options(args)
    return StableDiffusion.from_pretrained(args.model, device, precision, mem.attention_slicing, mem.cpu_offload,
                                           tuple(args.t_range), vae_slicing=mem.vae_slicing,
                                           vae_tiling=mem.vae_tiling)


def pipeline_label(sd: StableDiffusion, model: str) -> str:
    """``tiny-random`` for the tiny test checkpoint, ``small-prior-trained-here`` for a pipeline
    written by :mod:`.train_prior`, else the ``--model`` value."""
    if sd.folder is not None and is_tiny(sd.folder):
        return PIPELINE_LABEL
    return PRIOR_LABEL if is_prior(sd.folder) else str(model)


def prompt_embeddings(sd: StableDiffusion, prompt: str, negative: str = "", view_dependent: bool = False,
                      release: bool = True) -> Dict[str, torch.Tensor]:
    """(1, L, D) embeddings: ``default`` (the prompt), ``uncond`` (the negative prompt) and, with
    ``view_dependent``, ``front`` / ``side`` / ``back`` of ``"<prompt>, <view> view"``.

    ``release`` frees the text encoder afterwards (it is not needed again).
    """
    emb = {"default": sd.text_embeddings(prompt), "uncond": sd.text_embeddings(negative)}
    if view_dependent:
        for name, text in view_prompts(prompt).items():
            emb[name] = sd.text_embeddings(text)
    if release:
        sd.release_text_encoder()
    return emb


#: ``"data"`` of every run made with the tiny random checkpoint.
TINY_DATA = data_label(standin="tiny random diffusion pipeline: the pictures are noise, they show the code runs")

#: ``"data"`` of every run made with a pipeline written by :mod:`.train_prior`.
PRIOR_DATA = data_label(standin="made with the small prior trained here (a latent diffusion model trained from "
                                "scratch on procedural renders of shapes x colours x views; not Stable Diffusion)")


def run_data_label(label: str, extra: str = "") -> str:
    """``"data"`` for metrics.json: the tiny-pipeline or small-prior stand-in label, or the model
    used; ``extra`` (e.g. the mesh) is appended after a semicolon."""
    base = TINY_DATA if label == PIPELINE_LABEL else PRIOR_DATA if label == PRIOR_LABEL else f"model: {label}"
    return f"{base}; {extra}" if extra else base


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    """Cosine of the angle between two tensors (flattened); NaN when either is zero."""
    a, b = a.detach().float().flatten(), b.detach().float().flatten()
    na, nb = float(a.norm()), float(b.norm())
    if na == 0.0 or nb == 0.0 or not (na < float("inf") and nb < float("inf")):
        return float("nan")
    return float(a @ b) / (na * nb)


class StepAlignment:
    """Does each optimisation step move the SDS latent toward the UNet's denoised estimate?

    The SDS gradient is ``w (eps_hat - eps)``, and ``x0_hat - z = -sqrt(1 - abar) / sqrt(abar)
    (eps_hat - eps)``: minus the gradient points from the latent ``z`` to the denoised estimate
    ``x0_hat`` of that step's noisy latent. :meth:`add` records the cosine between the change of
    the latent that the step made (re-rendered / re-encoded for the same view) and that
    direction; a working pipeline gives positive cosines (first order: the optimiser steps
    against the gradient), a broken one (no gradient reaching the parameters, a flipped sign)
    zero or negative ones.
    """

    def __init__(self):
        self.values = []

    def add(self, before: torch.Tensor, after: torch.Tensor, grad: torch.Tensor) -> float:
        """Record (and return) the cosine between ``after - before`` and ``-grad``."""
        return self.record(cosine(after - before, -grad))

    def record(self, value: float) -> float:
        """Record a cosine measured elsewhere (e.g. by :func:`descent_probe`)."""
        self.values.append(float(value))
        return float(value)

    @property
    def measured(self) -> list:
        """The recorded values that are numbers (NaN: a probe that could not measure)."""
        return [v for v in self.values if v == v]

    @property
    def mean(self) -> float:
        """Mean of the recorded values (NaN if any is NaN or none was recorded)."""
        return self.measured_mean if len(self.measured) == len(self.values) else float("nan")

    @property
    def measured_mean(self) -> float:
        """Mean of :attr:`measured` (NaN when none is)."""
        vals = self.measured
        return sum(vals) / len(vals) if vals else float("nan")

    @property
    def measured_median(self) -> float:
        """Median of :attr:`measured` (NaN when none is)."""
        vals = sorted(self.measured)
        if not vals:
            return float("nan")
        k = len(vals) // 2
        return vals[k] if len(vals) % 2 else 0.5 * (vals[k - 1] + vals[k])

    @property
    def positive_fraction(self) -> float:
        return sum(1 for v in self.values if v > 0) / len(self.values) if self.values else float("nan")


def gradient_check(params, grads, latent_fn, latent_grad: torch.Tensor, rel_step: float = 1e-3) -> float:
    """Does the SDS gradient reach the parameters, in full and with the right sign?

    ``grads`` are the parameters' gradients of the SDS surrogate (one per parameter, None where
    it does not reach), whose gradient with respect to the latent is ``latent_grad``; back-
    propagation claims ``grads = J^T latent_grad`` (J: the latent as a function of the
    parameters, ``latent_fn``: the step's view rendered and encoded again, with the same random
    samples). This moves the parameters by ``-+s grads`` (``s`` = ``rel_step`` times their norm
    over the gradient's norm), evaluates the latent at both points (central difference) and
    returns ``-latent_grad . (z(-s) - z(+s)) / (2 s |grads|^2)``: 1 (to second order in s) when
    the gradient that arrives is the true one; 0 / NaN when none arrives; -1 with a flipped sign,
    other values when part of it is lost or scaled. The parameters are restored exactly.

    The step is also halved: when the two ratios differ by over 2 % (a saturated sigmoid bends
    within one step), the result is Richardson's extrapolation ``(4 r(s/2) - r(s)) / 3`` of the
    central difference's ``c s^2`` error, and NaN when they differ by over half.

    NaN also when the change that back-propagation predicts is below what the latent's own
    rounding can show (under 10 float epsilons of ``|latent_grad| . |z|``): a saturated texture
    or field whose gradient has nearly vanished cannot be measured this way, and the 0 a
    finite difference of identical latents would give is not evidence of a broken gradient.
    """
    pairs = [(p, g) for p, g in zip(params, grads) if g is not None]
    g2 = sum(float(g.detach().double().pow(2).sum()) for _, g in pairs)
    if not pairs or not math.isfinite(g2) or g2 == 0.0:
        return float("nan")
    pnorm = math.sqrt(sum(float(p.detach().double().pow(2).sum()) for p, _ in pairs))
    scale = rel_step * max(pnorm, 1e-8) / math.sqrt(g2)
    saved = [p.detach().clone() for p, _ in pairs]
    eps = torch.finfo(latent_grad.dtype if latent_grad.is_floating_point() else torch.float32).eps

    def ratio(step: float) -> float:
        with torch.no_grad():
            try:
                for p, g in pairs:
                    p.sub_(g * step)
                z_descent = latent_fn().double()
                for (p, g), s0 in zip(pairs, saved):
                    p.copy_(s0).add_(g * step)
                z_ascent = latent_fn().double()
            finally:
                for (p, _), s0 in zip(pairs, saved):
                    p.copy_(s0)
        floor = 10 * eps * float((latent_grad.double().abs() * z_descent.abs()).sum())
        if 2 * step * g2 < floor:
            return float("nan")
        return float((-latent_grad.double() * (z_descent - z_ascent)).sum()) / (2 * step * g2)

    coarse = ratio(scale)
    if not math.isfinite(coarse):
        return coarse
    fine = ratio(scale / 2)
    if not math.isfinite(fine) or abs(coarse - fine) <= 0.02 * max(abs(fine), 1e-12):
        return coarse  # the step is in the linear regime (or the half step is below rounding)
    # a central difference errs by c s^2: Richardson's extrapolation to s = 0 removes that term
    # (a texture or field far into its sigmoid's saturation bends within one probe step); if the
    # two steps disagree wildly even that is not a measurement
    if abs(coarse - fine) > 0.5 * max(abs(fine), abs(coarse)):
        return float("nan")
    return (4 * fine - coarse) / 3


def write_tiny_note(folder: Path, label: str) -> Optional[Path]:
    """Write ``TINY_PIPELINE.md`` into ``folder`` when the run used the tiny random checkpoint, or
    ``SMALL_PRIOR.md`` when it used the small prior trained here."""
    if label == PRIOR_LABEL:
        return atomic_write(Path(folder) / "SMALL_PRIOR.md", PRIOR_NOTE)
    if label != PIPELINE_LABEL:
        return None
    return atomic_write(Path(folder) / "TINY_PIPELINE.md", TINY_NOTE)


class StepTimer:
    """Wall time of the optimisation steps only (not of image/video saving, nor of the
    measurements made inside a step under :meth:`paused`).

    The first step (lazy initialisation, allocator warm-up) is kept apart: :attr:`per_step` is
    the mean over the later steps (the first one when there is only one).
    """

    def __init__(self, device: torch.device):
        self.device = device
        self.first: Optional[float] = None
        self.total = 0.0
        self.steps = 0
        self._t0 = 0.0
        self._paused = 0.0

    def __enter__(self):
        self._sync()
        self._t0 = time.perf_counter()
        self._paused = 0.0
        return self

    @contextlib.contextmanager
    def paused(self):
        """Leave the time spent in this block out of the step being timed."""
        self._sync()
        t = time.perf_counter()
        try:
            yield
        finally:
            self._sync()
            self._paused += time.perf_counter() - t

    def __exit__(self, *exc):
        self._sync()
        dt = time.perf_counter() - self._t0 - self._paused
        if self.first is None:
            self.first = dt
        else:
            self.total += dt
            self.steps += 1
        return False

    def _sync(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    @property
    def per_step(self) -> float:
        """Mean seconds per step after the first (NaN before any step)."""
        if self.steps:
            return self.total / self.steps
        return float("nan") if self.first is None else self.first

    def metrics(self) -> Dict[str, Any]:
        return {"time_per_iter_s": self.per_step, "first_iter_s": self.first, "timed_iters": self.steps}


def rss_mb() -> float:
    """Current resident set size of this process in MiB (Linux /proc; falls back to the peak)."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * resource.getpagesize() / 2 ** 20
    except OSError:
        return peak_rss_mb()


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB."""
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024.0 if sys.platform != "darwin" else kb / 2 ** 20


def memory_metrics(device: torch.device, rss_before_loop: float,
                   sd: Optional[StableDiffusion] = None) -> Dict[str, Any]:
    """Peak memory for metrics.json: ``peak_memory_mb`` is the peak CUDA memory allocated by
    tensors since the model was loaded (``torch.cuda.max_memory_allocated``) on a GPU, else the
    process's peak resident set size (``ru_maxrss``: the whole process, since it started);
    ``peak_memory_kind`` says which. With ``sd`` also the precision and memory options used."""
    out: Dict[str, Any] = {"peak_rss_mb": round(peak_rss_mb(), 1), "rss_before_loop_mb": round(rss_before_loop, 1)}
    if device.type == "cuda":
        out["peak_cuda_allocated_mb"] = round(torch.cuda.max_memory_allocated(device) / 2 ** 20, 1)
        out["peak_memory_mb"], out["peak_memory_kind"] = out["peak_cuda_allocated_mb"], "cuda_max_memory_allocated"
    else:
        out["peak_memory_mb"], out["peak_memory_kind"] = out["peak_rss_mb"], "process_peak_rss"
    if sd is not None:
        out["memory_options"] = {"dtype": str(sd.dtype).replace("torch.", ""), **sd.memory.as_dict()}
    return out


def save_args(folder: Path, args: argparse.Namespace) -> Path:
    """``args.json`` with every flag of the run (for the record), written atomically."""
    flags = {k: v for k, v in vars(args).items() if not k.startswith("_") and k != "given"}
    return atomic_write(Path(folder) / "args.json", json.dumps(flags, indent=2, default=str) + "\n")


def resume_state(ckpts, args: argparse.Namespace, config: Dict[str, Any], where: Path,
                 device: torch.device) -> Optional[dict]:
    """With ``--resume``: the newest intact checkpoint of ``ckpts`` (None when there is none yet),
    after checking that it was made with the same ``config`` (prompt, model, field sizes, ...);
    without ``--resume``: None."""
    if not args.resume:
        return None
    state = ckpts.resume(map_location=device)
    if state is None:
        print(f"note: no checkpoint in {where}; starting from step 0", file=sys.stderr, flush=True)
        return None
    if not isinstance(state.get("config"), dict):
        raise user_error(Path(ckpts.directory), "checkpoints that record their run's settings (config)",
                         "an older checkpoint without them", "start a fresh run or choose another --output_dir")
    check_same_config(state["config"], config, where)
    return state


def model_id(sd: StableDiffusion, model: str) -> str:
    """What identifies the diffusion model in a checkpoint's config: the resolved folder it was
    loaded from (a hub id resolves to its snapshot folder), else the ``--model`` text."""
    return str(Path(sd.folder).resolve()) if sd.folder is not None else str(model)


def finish_note(stopped_at: Optional[int], total: int) -> Dict[str, Any]:
    """metrics.json entries of a run that was stopped (Ctrl-C / SIGTERM) before its last step."""
    if stopped_at is None:
        return {"stopped_at_step": None}
    print(f"stopped after step {stopped_at} of {total}; the checkpoint is saved: rerun the same command with "
          f"--resume to continue", file=sys.stderr, flush=True)
    return {"stopped_at_step": stopped_at}

