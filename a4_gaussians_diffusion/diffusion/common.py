"""Flags, loading, prompt embeddings and bookkeeping shared by the three SDS scripts."""

from __future__ import annotations

import argparse
import json
import re
import resource
import sys
import time
from pathlib import Path
from typing import Any, Dict, Optional

import torch

from .sds import DEFAULT_MODEL, StableDiffusion
from .tiny import PIPELINE_LABEL, is_tiny
from .views import view_prompts

TINY_NOTE = """# Tiny-pipeline result

These files were produced with a **tiny, randomly initialised** Stable Diffusion checkpoint
(`a4_gaussians_diffusion/diffusion/tiny.py`), because the real weights
(`stabilityai/stable-diffusion-2-1-base`) cannot be downloaded in this environment. They show that
the whole pipeline runs (rendering, VAE encoding, SDS gradients, optimisation, outputs); the
pictures themselves are **not** what Stable Diffusion would produce. Rerun the same command with
`--model stabilityai/stable-diffusion-2-1-base` (weights in the local Hugging Face cache) for real results.
"""


def add_sds_flags(ap: argparse.ArgumentParser, default_guidance: float = 100.0) -> None:
    """The flags every SDS script shares (model, prompts, guidance, precision and memory)."""
    ap.add_argument("--prompt", default="a hamburger", help="text prompt")
    ap.add_argument("--negative_prompt", default="", help="negative / unconditional prompt of classifier-free guidance")
    ap.add_argument("--model", default=DEFAULT_MODEL,
                    help="Stable Diffusion checkpoint: a hub id in the local Hugging Face cache or a diffusers folder "
                         "(never downloaded)")
    ap.add_argument("--guidance_scale", type=float, default=default_guidance, help="classifier-free guidance scale s")
    ap.add_argument("--t_range", type=float, nargs=2, default=(0.02, 0.98), metavar=("MIN", "MAX"),
                    help="timesteps t ~ U{int(T MIN) .. int(T MAX)} of the T = 1000 training steps")
    ap.add_argument("--precision", choices=["auto", "fp32", "fp16"], default="auto",
                    help="weights of the diffusion model: auto = fp16 on CUDA, fp32 on CPU")
    ap.add_argument("--attention_slicing", action="store_true",
                    help="compute the UNet's attention in slices (less peak memory, slower)")
    ap.add_argument("--cpu_offload", action="store_true",
                    help="keep the diffusion weights in CPU memory and stream them to the GPU per sub-module "
                         "(lowest GPU memory, slowest; CUDA only)")
    ap.add_argument("--postfix", default="", help="appended to the run's folder name")
    ap.add_argument("--resume", action="store_true", help="continue from the run folder's last checkpoint")
    ap.add_argument("--ckpt_every", type=int, default=500, help="checkpoint every this many iterations (0: only at the end)")


def slug(text: str) -> str:
    """A folder name for a prompt: spaces -> underscores, other unsafe characters dropped."""
    s = re.sub(r"\s+", "_", text.strip())
    s = re.sub(r"[^A-Za-z0-9_.,-]", "", s)
    return (s or "prompt")[:80]


def run_folder(args: argparse.Namespace, suffix: str = "") -> Path:
    """``<output_dir>/<prompt slug><suffix><postfix>`` (created)."""
    out = Path(args.output_dir) / f"{slug(args.prompt)}{suffix}{args.postfix}"
    out.mkdir(parents=True, exist_ok=True)
    return out


def load_guidance(args: argparse.Namespace, device: torch.device) -> StableDiffusion:
    """The diffusion model named by ``--model`` with the memory flags applied."""
    if args.guidance_scale <= 0:
        raise ValueError(f"--guidance_scale must be positive, got {args.guidance_scale}")
    return StableDiffusion.from_pretrained(args.model, device, args.precision, args.attention_slicing,
                                           args.cpu_offload, tuple(args.t_range))


def pipeline_label(sd: StableDiffusion, model: str) -> str:
    """``tiny-random`` for the tiny test checkpoint, else the ``--model`` value."""
    return PIPELINE_LABEL if sd.folder is not None and is_tiny(sd.folder) else str(model)


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


def write_tiny_note(folder: Path, label: str) -> Optional[Path]:
    """Write ``TINY_PIPELINE.md`` into ``folder`` when the run used the tiny random checkpoint."""
    if label != PIPELINE_LABEL:
        return None
    p = Path(folder) / "TINY_PIPELINE.md"
    p.write_text(TINY_NOTE)
    return p


class StepTimer:
    """Wall time of the optimisation steps only (not of image/video saving).

    The first step (lazy initialisation, allocator warm-up) is kept apart: :attr:`per_step` is
    the mean over the later steps (the first one when there is only one).
    """

    def __init__(self, device: torch.device):
        self.device = device
        self.first: Optional[float] = None
        self.total = 0.0
        self.steps = 0
        self._t0 = 0.0

    def __enter__(self):
        self._sync()
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self._sync()
        dt = time.perf_counter() - self._t0
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


def memory_metrics(device: torch.device, rss_before_loop: float) -> Dict[str, Any]:
    """Peak process memory (and peak CUDA memory on a GPU) for metrics.json."""
    out: Dict[str, Any] = {"peak_rss_mb": round(peak_rss_mb(), 1), "rss_before_loop_mb": round(rss_before_loop, 1)}
    if device.type == "cuda":
        out["peak_cuda_allocated_mb"] = round(torch.cuda.max_memory_allocated(device) / 2 ** 20, 1)
    return out


def check_iterations(n: int, name: str = "--iterations") -> int:
    if n < 1:
        raise ValueError(f"{name} must be at least 1, got {n}")
    return n


def save_args(folder: Path, args: argparse.Namespace) -> Path:
    """``args.json`` with every flag of the run (for the record and for --resume)."""
    p = Path(folder) / "args.json"
    p.write_text(json.dumps({k: v for k, v in vars(args).items() if not k.startswith("_")}, indent=2, default=str))
    return p

