"""Score distillation sampling (SDS) with a Stable Diffusion checkpoint loaded through diffusers.

DreamFusion's SDS gradient of a latent image ``z`` (B, 4, h, w) for a text condition ``y``:

    t ~ U{t_min .. t_max}            (20 .. 980 of 1000 training steps by default)
    eps ~ N(0, I),  z_t = sqrt(abar_t) z + sqrt(1 - abar_t) eps     (the scheduler's add_noise)
    eps_hat = eps_u + s (eps_c - eps_u)                             (classifier-free guidance, s = 100)
    grad    = w(t) (eps_hat - eps),  w(t) = 1 - abar_t

The UNet is evaluated without gradient; the gradient reaches ``z`` through the surrogate loss
``L = 1/2 sum (z - sg[z - grad])^2 / B`` (sg = stop-gradient), whose gradient with respect to
``z`` is ``grad / B`` per item, i.e. exactly the SDS gradient for B = 1 (the course's batch size);
its value, ``|grad|^2 / (2 B)``, is what the scripts log as the SDS loss. Without guidance
(``uncond=None``) ``eps_hat = eps_c``.

Pure functions (:func:`classifier_free_guidance`, :func:`sds_weight`, :func:`sds_surrogate`,
:func:`epsilon_from_prediction`) hold the maths and need no model; :class:`StableDiffusion`
holds the tokenizer, text encoder, UNet, VAE and DDIM scheduler of one checkpoint and applies
them (text embeddings, VAE encode/decode, :meth:`StableDiffusion.sds_loss`).

Loading never downloads: ``--model`` is a local diffusers folder or a hub id that must already
be in the local Hugging Face cache; otherwise :func:`resolve_model` raises a one-line
:class:`l3d.errors.UserError` saying how to get the weights. Tests and demos use the tiny random
checkpoint of :mod:`a4_gaussians_diffusion.diffusion.tiny`, loaded through the same code.

Shapes: B batch, L tokens, D text-embedding channels, C latent channels (4), h/w latent size,
H/W image size (``vae_scale_factor * h``; 512 for Stable Diffusion 2.1-base).
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F

from l3d.errors import UserError, user_error
from l3d.validate import check_shape

__all__ = [
    "DEFAULT_MODEL", "MODEL_COMPONENTS", "MemoryOptions", "SDSOutput", "StableDiffusion", "apply_memory_options",
    "resolve_model", "classifier_free_guidance",
    "sds_weight", "sds_surrogate", "epsilon_from_prediction", "timestep_range",
]

#: The checkpoint the course uses (512 x 512 images, 4 x 64 x 64 latents, epsilon prediction).
DEFAULT_MODEL = "stabilityai/stable-diffusion-2-1-base"
#: Sub-folders of a diffusers Stable Diffusion checkpoint that SDS needs.
MODEL_COMPONENTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")

Precision = Literal["auto", "fp32", "fp16"]
Offload = Literal["none", "model", "sequential"]


# ----------------------------------------------------------------------------------------------
# the maths
# ----------------------------------------------------------------------------------------------
def classifier_free_guidance(eps_uncond: torch.Tensor, eps_cond: torch.Tensor, scale: float) -> torch.Tensor:
    """``eps_u + s (eps_c - eps_u)`` for (B, C, h, w) noise predictions (s = 1 gives ``eps_c``)."""
    if eps_uncond.shape != eps_cond.shape:
        raise ValueError(f"eps_uncond {tuple(eps_uncond.shape)} and eps_cond {tuple(eps_cond.shape)} must match")
    return eps_uncond + scale * (eps_cond - eps_uncond)


def sds_weight(alphas_cumprod: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """(B,) SDS weights ``w(t) = 1 - abar_t`` for integer timesteps ``t`` (B,)."""
    return 1.0 - alphas_cumprod.to(t.device)[t.long()]


def sds_surrogate(latents: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """Scalar loss whose gradient with respect to ``latents`` (B, ...) is ``grad / B``.

    ``1/2 sum (latents - sg[latents - grad])^2 / B``; computed in float32 whatever the latents'
    dtype, so fp16 latents do not lose the small gradients.
    """
    if latents.shape != grad.shape:
        raise ValueError(f"latents {tuple(latents.shape)} and grad {tuple(grad.shape)} must match")
    target = (latents.detach().float() - grad.float()).detach()
    return 0.5 * F.mse_loss(latents.float(), target, reduction="sum") / latents.shape[0]


def epsilon_from_prediction(pred: torch.Tensor, x_t: torch.Tensor, alpha_bar: torch.Tensor,
                            prediction_type: str = "epsilon") -> torch.Tensor:
    """Turn a UNet output into a noise estimate.

    Args:
        pred, x_t: (B, C, h, w) model output and noisy latents; alpha_bar: (B,) ``abar_t``.
        prediction_type: the scheduler's ``epsilon`` (returned as is), ``v_prediction``
            (``eps = sqrt(abar) v + sqrt(1 - abar) x_t``, e.g. Stable Diffusion 2.1 at 768 px)
            or ``sample`` (``eps = (x_t - sqrt(abar) x_0) / sqrt(1 - abar)``).
    """
    if prediction_type == "epsilon":
        return pred
    a = alpha_bar.to(pred.dtype).view(-1, *([1] * (pred.dim() - 1)))
    if prediction_type == "v_prediction":
        return a.sqrt() * pred + (1 - a).sqrt() * x_t
    if prediction_type == "sample":
        return (x_t - a.sqrt() * pred) / (1 - a).sqrt()
    raise ValueError(f"unknown prediction_type {prediction_type!r}; expected epsilon, v_prediction or sample")


def timestep_range(num_train_timesteps: int, t_range: Sequence[float] = (0.02, 0.98)) -> Tuple[int, int]:
    """(t_min, t_max) inclusive integer bounds: ``int(T * t_range[k])`` (20, 980 for T = 1000)."""
    lo, hi = float(t_range[0]), float(t_range[1])
    if not 0.0 <= lo <= hi <= 1.0:
        raise ValueError(f"t_range must satisfy 0 <= min <= max <= 1, got {tuple(t_range)}")
    t_min, t_max = int(num_train_timesteps * lo), int(num_train_timesteps * hi)
    return t_min, min(t_max, num_train_timesteps - 1)


@dataclass(frozen=True)
class SDSOutput:
    """Result of :meth:`StableDiffusion.sds_loss`.

    Attributes:
        loss: scalar surrogate loss (its gradient w.r.t. the latents is ``grad / B``).
        grad: (B, C, h, w) SDS gradient ``w(t) (eps_hat - eps)`` (detached, float32).
        t: (B,) long timesteps; noise: (B, C, h, w) the eps added; eps_hat: (B, C, h, w) the
        guided noise prediction; w: (B,) the weights ``1 - abar_t``.
    """

    loss: torch.Tensor
    grad: torch.Tensor
    t: torch.Tensor
    noise: torch.Tensor
    eps_hat: torch.Tensor
    w: torch.Tensor


# ----------------------------------------------------------------------------------------------
# loading
# ----------------------------------------------------------------------------------------------
def _quiet_libraries() -> None:
    """Silence the progress bars and advisory warnings of diffusers / transformers / hub."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    for name in ("diffusers", "transformers", "huggingface_hub", "accelerate"):
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        import diffusers.utils.logging as dlog
        import transformers.utils.logging as tlog

        dlog.disable_progress_bar()
        tlog.disable_progress_bar()
        dlog.set_verbosity_error()
        tlog.set_verbosity_error()
    except Exception:  # pragma: no cover - optional niceties
        pass
    warnings.filterwarnings("ignore", module=r"(diffusers|transformers|huggingface_hub|accelerate)\b")


def _how_to_get(model: str) -> str:
    return (f"Stable Diffusion weights {model!r} are not in the local Hugging Face cache and are never downloaded "
            f"by these scripts: on a machine with network run `hf download {model}` (or "
            f"`huggingface-cli download {model}`; set HF_HOME to share the cache), or pass --model <folder> "
            f"holding a diffusers checkpoint ({', '.join(MODEL_COMPONENTS)}), then rerun")


def resolve_model(model: Union[str, os.PathLike]) -> Path:
    """The local folder of a Stable Diffusion checkpoint, without any network access.

    Args:
        model: a folder (with ``unet/``, ``vae/``, ``text_encoder/``, ``tokenizer/``,
            ``scheduler/``) or a hub id such as ``stabilityai/stable-diffusion-2-1-base``
            already in the local Hugging Face cache.
    Raises:
        UserError: one line naming what is missing and how to obtain it.
    """
    text = str(model)
    path = Path(text).expanduser()
    if path.exists():
        if not path.is_dir():
            raise UserError(f"--model {text} is a file; expected a diffusers checkpoint folder or a hub id")
        missing = [c for c in MODEL_COMPONENTS if not (path / c).is_dir()]
        if missing:
            raise UserError(f"--model {text} is not a diffusers Stable Diffusion folder: it lacks {', '.join(missing)}/")
        return path
    looks_like_path = text.startswith((".", "/", "~")) or text.count("/") != 1 or os.sep != "/" and os.sep in text
    if looks_like_path:
        raise UserError(f"--model folder not found: {text} (give a diffusers checkpoint folder or a hub id "
                        f"such as {DEFAULT_MODEL})")
    try:
        from huggingface_hub import snapshot_download

        folder = Path(snapshot_download(text, local_files_only=True))
    except Exception:
        raise UserError(_how_to_get(text)) from None
    missing = [c for c in MODEL_COMPONENTS if not (folder / c).is_dir()]
    if missing:
        raise UserError(f"the cached copy of {text} lacks {', '.join(missing)}/; " + _how_to_get(text))
    return folder


def choose_dtype(device: torch.device, precision: Precision = "auto") -> torch.dtype:
    """float16 on CUDA and float32 on CPU for ``auto``; ``fp16`` / ``fp32`` force one.

    fp16 on a CPU device is refused (a :class:`UserError`) rather than silently changed: the
    memory flags are for CUDA cards, and on the CPU half precision only costs time (one SDS step
    of the tiny pipeline took 3.7x as long in fp16 as in float32 on this project's CPU) while
    RAM is rarely what limits a CPU run.
    """
    if precision == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    if precision == "fp16":
        if device.type != "cuda":
            raise UserError(f"--fp16 (--precision fp16) needs a CUDA device, found --device {device}: half-precision "
                            f"weights on the CPU are several times slower than float32 and save no memory that "
                            f"matters there; drop --fp16 (the CPU runs in float32) or run with --device cuda")
        return torch.float16
    if precision == "fp32":
        return torch.float32
    raise ValueError(f"precision must be auto, fp32 or fp16, got {precision!r}")


@dataclass(frozen=True)
class MemoryOptions:
    """How to fit Stable Diffusion into a small GPU (each trades speed for peak memory).

    Attributes:
        attention_slicing: the UNet's attention in slices of half the head size (diffusers'
            ``set_attention_slice("auto")``, what ``pipe.enable_attention_slicing()`` calls):
            the attention processors become ``SlicedAttnProcessor``.
        vae_slicing: the VAE encodes / decodes a batch one image at a time
            (``AutoencoderKL.enable_slicing``); only a batch of more than one image changes.
        vae_tiling: the VAE encodes / decodes in overlapping tiles of half the model's image
            size (256 px for Stable Diffusion 2.1-base), blended where they overlap
            (``AutoencoderKL.enable_tiling`` with the tile size set so that the model's own
            image size is tiled); the latents differ slightly from an untiled encoding.
        cpu_offload: ``none``; ``model`` = each of text encoder, UNet and VAE moves to the GPU
            when called and the previous one back to the CPU (accelerate's
            ``cpu_offload_with_hook`` chained in that order, what ``pipe.enable_model_cpu_offload()``
            does); ``sequential`` = every sub-module's weights stream to the GPU only for its
            own forward (accelerate's ``cpu_offload``, what ``pipe.enable_sequential_cpu_offload()``
            does): the lowest GPU memory, the slowest steps. On a CPU device the hooks run and
            change nothing.
    """

    attention_slicing: bool = False
    vae_slicing: bool = False
    vae_tiling: bool = False
    cpu_offload: Offload = "none"

    def as_dict(self) -> dict:
        return {"attention_slicing": self.attention_slicing, "vae_slicing": self.vae_slicing,
                "vae_tiling": self.vae_tiling, "cpu_offload": self.cpu_offload}


def apply_memory_options(text_encoder, unet, vae, device: torch.device, options: MemoryOptions,
                         image_size: Optional[int] = None) -> None:
    """Apply ``options`` to the loaded (frozen) modules and place them on ``device``.

    Args:
        text_encoder, unet, vae: the checkpoint's modules (``text_encoder`` may be None).
        device: the execution device; image_size: the model's image side in pixels (the VAE's
            tile size becomes half of it with ``vae_tiling``; default: the VAE's own ``sample_size``).
    """
    if options.cpu_offload not in ("none", "model", "sequential"):
        raise ValueError(f"cpu_offload must be none, model or sequential, got {options.cpu_offload!r}")
    if options.attention_slicing:
        unet.set_attention_slice("auto")
    if options.vae_slicing:
        vae.enable_slicing()
    if options.vae_tiling:
        vae.enable_tiling()
        size = int(image_size or vae.config.sample_size)
        factor = 2 ** (len(vae.config.block_out_channels) - 1)
        # diffusers tiles only images larger than a tile: a tile of half the image size makes the
        # model's own images (512 px) split into overlapping 256 px tiles
        vae.tile_sample_min_size = max(size // 2, factor)
        vae.tile_latent_min_size = max(size // 2 // factor, 1)
    modules = [m for m in (text_encoder, unet, vae) if m is not None]
    if options.cpu_offload == "sequential":
        from accelerate import cpu_offload as offload

        for m in modules:
            offload(m, execution_device=device)
    elif options.cpu_offload == "model":
        from accelerate import cpu_offload_with_hook

        hook = None
        for m in modules:  # text encoder -> UNet -> VAE: calling one sends the previous one back to the CPU
            _, hook = cpu_offload_with_hook(m, execution_device=device, prev_module_hook=hook)
    else:
        for m in modules:
            m.to(device)


# ----------------------------------------------------------------------------------------------
# the model
# ----------------------------------------------------------------------------------------------
class StableDiffusion:
    """The parts of one Stable Diffusion checkpoint that score distillation uses.

    Build it with :meth:`from_pretrained`. All network weights are frozen (``requires_grad``
    False); gradients flow only through the VAE encoder into whatever produced the image.

    Attributes:
        tokenizer, text_encoder, unet, vae, scheduler: the diffusers / transformers objects.
        device: where the inputs go; dtype: the weights' dtype (fp16 on CUDA by default).
        t_min, t_max: the inclusive timestep range sampled by :meth:`sds_loss`.
        folder: the checkpoint folder it was loaded from; memory: the :class:`MemoryOptions` applied.
    """

    def __init__(self, tokenizer, text_encoder, unet, vae, scheduler, device: torch.device,
                 dtype: torch.dtype = torch.float32, t_range: Sequence[float] = (0.02, 0.98),
                 folder: Optional[Path] = None):
        self.tokenizer, self.text_encoder, self.unet, self.vae, self.scheduler = tokenizer, text_encoder, unet, vae, scheduler
        self.device = torch.device(device)
        self.dtype = dtype
        self.folder = folder
        self.num_train_timesteps = int(scheduler.config.num_train_timesteps)
        self.t_min, self.t_max = timestep_range(self.num_train_timesteps, t_range)
        self.alphas_cumprod = scheduler.alphas_cumprod.to(self.device, torch.float32)  # (T,)
        self.prediction_type = str(scheduler.config.get("prediction_type", "epsilon"))
        self.scaling_factor = float(vae.config.get("scaling_factor", 0.18215))
        self.vae_scale_factor = 2 ** (len(vae.config.block_out_channels) - 1)
        self.latent_channels = int(unet.config.in_channels)
        self.latent_size = int(unet.config.sample_size)
        self.image_size = self.latent_size * self.vae_scale_factor
        self.embedding_dim = int(unet.config.cross_attention_dim)
        self.memory = MemoryOptions()  # set by from_pretrained

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def from_pretrained(
        cls,
        model: Union[str, os.PathLike] = DEFAULT_MODEL,
        device: Union[str, torch.device] = "cpu",
        precision: Precision = "auto",
        attention_slicing: bool = False,
        cpu_offload: Union[bool, Offload] = False,
        t_range: Sequence[float] = (0.02, 0.98),
        vae_slicing: bool = False,
        vae_tiling: bool = False,
    ) -> "StableDiffusion":
        """Load a checkpoint from a local folder or the local Hugging Face cache (never the network).

        Args:
            model: folder or hub id (see :func:`resolve_model`).
            device: where to run; precision: ``auto`` = fp16 weights on CUDA, fp32 on CPU.
            attention_slicing, vae_slicing, vae_tiling, cpu_offload: see :class:`MemoryOptions`
                (``cpu_offload`` True means ``"sequential"``, False ``"none"``).
        The options applied are in the result's ``memory`` attribute.
        """
        _quiet_libraries()
        device = torch.device(device)
        folder = resolve_model(model)
        dtype = choose_dtype(device, precision)
        offload = {True: "sequential", False: "none", None: "none"}.get(cpu_offload, cpu_offload) \
            if isinstance(cpu_offload, (bool, type(None))) else str(cpu_offload)
        memory = MemoryOptions(bool(attention_slicing), bool(vae_slicing), bool(vae_tiling), offload)
        from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
        from transformers import CLIPTextModel, CLIPTokenizer

        def load(component: str, loader):
            try:
                return loader()
            except (OSError, ValueError, KeyError, TypeError) as exc:
                msg = " ".join(str(exc).split())[:300]
                raise UserError(f"cannot load {component}/ of {folder}: {msg}") from None

        tokenizer = load("tokenizer", lambda: CLIPTokenizer.from_pretrained(folder / "tokenizer", local_files_only=True))
        text_encoder = load("text_encoder", lambda: CLIPTextModel.from_pretrained(
            folder / "text_encoder", local_files_only=True, dtype=dtype))
        unet = load("unet", lambda: UNet2DConditionModel.from_pretrained(
            folder / "unet", local_files_only=True, torch_dtype=dtype))
        vae = load("vae", lambda: AutoencoderKL.from_pretrained(folder / "vae", local_files_only=True, torch_dtype=dtype))
        scheduler = load("scheduler", lambda: DDIMScheduler.from_pretrained(folder / "scheduler", local_files_only=True))
        prediction = str(scheduler.config.get("prediction_type", "epsilon"))
        if prediction not in ("epsilon", "v_prediction", "sample"):
            raise user_error(folder / "scheduler" / "scheduler_config.json",
                             "prediction_type epsilon, v_prediction or sample", repr(prediction))
        for m in (text_encoder, unet, vae):
            m.eval()
            m.requires_grad_(False)
        image_size = int(unet.config.sample_size) * 2 ** (len(vae.config.block_out_channels) - 1)
        apply_memory_options(text_encoder, unet, vae, device, memory, image_size)
        sd = cls(tokenizer, text_encoder, unet, vae, scheduler, device, dtype, t_range, folder)
        sd.memory = memory
        return sd

    # -- text ----------------------------------------------------------------------------------
    @torch.no_grad()
    def text_embeddings(self, prompts: Union[str, Sequence[str]]) -> torch.Tensor:
        """(B, L, D) float32 CLIP embeddings of B prompts, padded to the tokenizer's max length."""
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        ids = self.tokenizer(prompts, padding="max_length", max_length=self.tokenizer.model_max_length,
                             truncation=True, return_tensors="pt").input_ids
        return self.text_encoder(ids.to(self.device))[0].float()

    def release_text_encoder(self) -> None:
        """Free the text encoder's memory once every embedding has been computed."""
        self.text_encoder = None
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    # -- VAE -----------------------------------------------------------------------------------
    def encode_images(self, images: torch.Tensor, generator: Optional[torch.Generator] = None,
                      sample: bool = True) -> torch.Tensor:
        """(B, 3, H', W') images in [0, 1] -> (B, C, h, w) scaled latents (differentiable).

        Images of another size are first resized bilinearly to the model's image size (512 for
        Stable Diffusion 2.1-base); the latent is a sample of the VAE posterior (its mean with
        ``sample=False``) times the scaling factor (0.18215).
        """
        check_shape(images, ("B", 3, "H", "W"), "images")
        if images.shape[-2:] != (self.image_size, self.image_size):
            images = F.interpolate(images, (self.image_size, self.image_size), mode="bilinear", align_corners=False)
        posterior = self.vae.encode((2 * images - 1).to(self.dtype)).latent_dist
        z = posterior.sample(generator) if sample else posterior.mean
        return z * self.scaling_factor

    @torch.no_grad()
    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) scaled latents -> (B, 3, H, W) float32 images in [0, 1]."""
        check_shape(latents, ("B", self.latent_channels, "h", "w"), "latents")
        images = self.vae.decode((latents / self.scaling_factor).to(self.dtype)).sample
        return (images.float() / 2 + 0.5).clamp(0, 1)

    # -- SDS -----------------------------------------------------------------------------------
    def sample_timesteps(self, batch: int, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """(B,) long timesteps uniform in ``t_min .. t_max`` (inclusive)."""
        return torch.randint(self.t_min, self.t_max + 1, (batch,), generator=generator,
                             device=self.device if generator is None else generator.device).to(self.device)

    @torch.no_grad()
    def predict_noise(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor,
                      uncond: Optional[torch.Tensor] = None, guidance_scale: float = 100.0) -> torch.Tensor:
        """Guided noise estimate ``eps_hat`` (B, C, h, w), float32.

        Args:
            x_t: (B, C, h, w) noisy latents; t: (B,) timesteps.
            cond: (B, L, D) or (1, L, D) text embeddings; uncond: the same for the negative /
                empty prompt, or None for no guidance (``eps_hat = eps_c``).
        One UNet call on the batch ``[x_t, x_t]`` with ``[uncond, cond]`` when guided.
        """
        b = x_t.shape[0]
        cond = cond.expand(b, -1, -1) if cond.shape[0] == 1 else cond
        if uncond is None:
            xs, ts, emb = x_t, t, cond
        else:
            uncond = uncond.expand(b, -1, -1) if uncond.shape[0] == 1 else uncond
            xs, ts, emb = torch.cat([x_t, x_t]), torch.cat([t, t]), torch.cat([uncond, cond])
        pred = self.unet(xs.to(self.dtype), ts, encoder_hidden_states=emb.to(self.dtype)).sample.float()
        abar = self.alphas_cumprod[ts]
        eps = epsilon_from_prediction(pred, xs.float(), abar, self.prediction_type)
        if uncond is None:
            return eps
        eps_u, eps_c = eps.chunk(2)
        return classifier_free_guidance(eps_u, eps_c, guidance_scale)

    def sds_loss(
        self,
        latents: torch.Tensor,
        cond: torch.Tensor,
        uncond: Optional[torch.Tensor] = None,
        guidance_scale: float = 100.0,
        grad_scale: float = 1.0,
        t: Optional[torch.Tensor] = None,
        noise: Optional[torch.Tensor] = None,
        generator: Optional[torch.Generator] = None,
    ) -> SDSOutput:
        """The SDS surrogate loss of latents (B, C, h, w) for text embeddings ``cond``.

        Args:
            cond / uncond: see :meth:`predict_noise` (uncond None = no classifier-free guidance).
            grad_scale: multiplies the gradient.
            t: (B,) timesteps, default uniform in ``t_min .. t_max``; noise: (B, C, h, w) eps,
                default standard normal (fix both to make the step deterministic).
        """
        check_shape(latents, ("B", self.latent_channels, "h", "w"), "latents")
        b = latents.shape[0]
        if t is None:
            t = self.sample_timesteps(b, generator)
        t = t.to(self.device).long().reshape(b)
        if noise is None:
            noise = torch.randn(latents.shape, generator=generator, dtype=torch.float32,
                                device=self.device if generator is None else generator.device).to(self.device)
        check_shape(noise, tuple(latents.shape), "noise")
        noise = noise.float()
        with torch.no_grad():
            x_t = self.scheduler.add_noise(latents.detach().float(), noise, t)
            eps_hat = self.predict_noise(x_t, t, cond, uncond, guidance_scale)
            w = sds_weight(self.alphas_cumprod, t)  # (B,)
            grad = grad_scale * w.view(-1, 1, 1, 1) * (eps_hat - noise)
            grad = torch.nan_to_num(grad)
        return SDSOutput(sds_surrogate(latents, grad), grad, t, noise, eps_hat, w)
