"""SDS maths and the diffusers wrapper, checked against hand-written references on the tiny random
Stable Diffusion checkpoint (no downloads)."""


import pytest
import torch

from a4_gaussians_diffusion.diffusion.sds import (StableDiffusion, classifier_free_guidance, epsilon_from_prediction,
                                                  resolve_model, sds_surrogate, sds_weight, timestep_range)
from a4_gaussians_diffusion.diffusion.tiny import build_tiny_pipeline, is_tiny, tiny_vocab
from l3d.errors import UserError


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return build_tiny_pipeline(tmp_path_factory.mktemp("tiny_sd"))


@pytest.fixture(scope="module")
def sd(tiny_dir):
    torch.manual_seed(0)
    return StableDiffusion.from_pretrained(tiny_dir, "cpu")


@pytest.fixture(scope="module")
def emb(sd):
    return sd.text_embeddings("a hamburger"), sd.text_embeddings("")


def reference_eps(sd, latents, noise, t, cond, uncond, scale):
    """eps_hat by hand: x_t from the closed form, two separate UNet calls, the CFG formula."""
    abar = sd.scheduler.alphas_cumprod[t].view(-1, 1, 1, 1)
    x_t = abar.sqrt() * latents + (1 - abar).sqrt() * noise
    with torch.no_grad():
        eps_c = sd.unet(x_t, t, encoder_hidden_states=cond.expand(len(t), -1, -1)).sample
        if uncond is None:
            return eps_c
        eps_u = sd.unet(x_t, t, encoder_hidden_states=uncond.expand(len(t), -1, -1)).sample
    return eps_u + scale * (eps_c - eps_u)


def test_tiny_checkpoint_layout_and_config(tiny_dir, sd):
    for sub in ("unet", "vae", "text_encoder", "tokenizer", "scheduler"):
        assert (tiny_dir / sub).is_dir()
    assert (tiny_dir / "tokenizer" / "vocab.json").is_file() and (tiny_dir / "tokenizer" / "merges.txt").is_file()
    assert is_tiny(tiny_dir)
    assert (sd.t_min, sd.t_max) == (20, 980)
    assert sd.num_train_timesteps == 1000 and sd.scaling_factor == pytest.approx(0.18215)
    assert sd.image_size == sd.latent_size * sd.vae_scale_factor == 64
    # the tokenizer uses the merges written by the test helper: "front" is one token
    vocab, _ = tiny_vocab()
    ids = sd.tokenizer("front view").input_ids
    assert vocab["front</w>"] in ids and vocab["view</w>"] in ids


def test_timestep_range_and_weight():
    assert timestep_range(1000) == (20, 980)
    assert timestep_range(1000, (0.0, 1.0)) == (0, 999)
    abar = torch.linspace(0.99, 0.01, 1000)
    t = torch.tensor([20, 500, 980])
    assert torch.allclose(sds_weight(abar, t), 1 - abar[t])
    with pytest.raises(ValueError):
        timestep_range(1000, (0.5, 0.2))


def test_sampled_timesteps_cover_range(sd):
    g = torch.Generator().manual_seed(0)
    t = sd.sample_timesteps(5000, g)
    assert int(t.min()) == 20 and int(t.max()) == 980


def test_text_embeddings(sd, emb):
    c, u = emb
    assert c.shape == (1, sd.tokenizer.model_max_length, sd.embedding_dim) and c.dtype == torch.float32
    assert not torch.allclose(c, u)
    assert torch.allclose(sd.text_embeddings(["a hamburger", ""]), torch.cat([c, u]), atol=1e-5)


@pytest.mark.parametrize("guided", [True, False])
def test_sds_gradient_equals_weighted_noise_residual(sd, emb, guided):
    """grad w.r.t. the latents == w(t) (eps_hat - eps) for a fixed noise and timestep."""
    cond, uncond = emb
    torch.manual_seed(1)
    latents = torch.randn(1, 4, 16, 16, requires_grad=True)
    noise, t, s = torch.randn(1, 4, 16, 16), torch.tensor([417]), 7.5
    res = sd.sds_loss(latents, cond, uncond if guided else None, guidance_scale=s, t=t, noise=noise)
    res.loss.backward()
    eps_hat = reference_eps(sd, latents.detach(), noise, t, cond, uncond if guided else None, s)
    w = 1 - sd.scheduler.alphas_cumprod[417]
    expected = w * (eps_hat - noise)
    assert float(expected.abs().max()) > 1e-3  # a non-trivial gradient
    torch.testing.assert_close(latents.grad, expected, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(res.grad, expected, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(res.eps_hat, eps_hat, rtol=1e-4, atol=1e-5)
    assert res.loss.item() == pytest.approx(0.5 * float((expected ** 2).sum()), rel=1e-4)


def test_sds_gradient_batch_is_mean_of_items(sd, emb):
    cond, uncond = emb
    torch.manual_seed(2)
    latents = torch.randn(2, 4, 16, 16, requires_grad=True)
    noise, t = torch.randn(2, 4, 16, 16), torch.tensor([100, 900])
    res = sd.sds_loss(latents, cond, uncond, 100.0, t=t, noise=noise)
    res.loss.backward()
    w = (1 - sd.scheduler.alphas_cumprod[t]).view(-1, 1, 1, 1)
    expected = w * (reference_eps(sd, latents.detach(), noise, t, cond, uncond, 100.0) - noise) / 2
    torch.testing.assert_close(latents.grad, expected, rtol=1e-4, atol=1e-4)


def test_classifier_free_guidance_formula(sd, emb):
    cond, uncond = emb
    torch.manual_seed(3)
    a, b = torch.randn(2, 4, 3, 3), torch.randn(2, 4, 3, 3)
    torch.testing.assert_close(classifier_free_guidance(a, b, 100.0), a + 100.0 * (b - a))
    torch.testing.assert_close(classifier_free_guidance(a, b, 1.0), b)
    # the model's guided prediction is affine in s: eps(s) = eps_u + s (eps_c - eps_u)
    x_t, t = torch.randn(1, 4, 16, 16), torch.tensor([600])
    e0 = sd.predict_noise(x_t, t, cond, uncond, 0.0)
    e1 = sd.predict_noise(x_t, t, cond, uncond, 1.0)
    e100 = sd.predict_noise(x_t, t, cond, uncond, 100.0)
    torch.testing.assert_close(e1, sd.predict_noise(x_t, t, cond, None), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(e100, e0 + 100.0 * (e1 - e0), rtol=1e-4, atol=1e-4)


def test_surrogate_gradient_matches():
    torch.manual_seed(4)
    for dtype in (torch.float32, torch.float64, torch.float16):
        z = torch.randn(3, 4, 5, 5, dtype=dtype, requires_grad=True)
        g = torch.randn(3, 4, 5, 5)
        loss = sds_surrogate(z, g)
        loss.backward()
        torch.testing.assert_close(z.grad.float(), g / 3, rtol=1e-3, atol=1e-3)
        assert loss.item() == pytest.approx(float((g ** 2).sum()) / 6, rel=1e-3)


def test_one_step_moves_latents_along_negative_gradient(sd, emb):
    cond, uncond = emb
    torch.manual_seed(5)
    z0 = torch.randn(1, 4, 16, 16)
    noise, t = torch.randn(1, 4, 16, 16), torch.tensor([300])
    # plain gradient descent: exactly z - lr * grad
    z = torch.nn.Parameter(z0.clone())
    opt = torch.optim.SGD([z], lr=0.01)
    res = sd.sds_loss(z, cond, uncond, 100.0, t=t, noise=noise)
    res.loss.backward()
    opt.step()
    torch.testing.assert_close(z.detach(), z0 - 0.01 * res.grad, rtol=1e-5, atol=1e-6)
    # AdamW's first step (no weight decay) moves every entry by lr against the sign of the gradient
    z = torch.nn.Parameter(z0.clone())
    opt = torch.optim.AdamW([z], lr=0.1, weight_decay=0.0)
    sd.sds_loss(z, cond, uncond, 100.0, t=t, noise=noise).loss.backward()
    opt.step()
    step = z.detach() - z0
    big = res.grad.abs() > 1e-3
    torch.testing.assert_close(step[big], -0.1 * res.grad[big].sign(), rtol=1e-3, atol=1e-4)
    assert float((step * res.grad).sum()) < 0


def test_epsilon_from_v_and_sample_predictions():
    torch.manual_seed(6)
    x0, eps = torch.randn(2, 4, 3, 3), torch.randn(2, 4, 3, 3)
    abar = torch.tensor([0.9, 0.2])
    a = abar.view(-1, 1, 1, 1)
    x_t = a.sqrt() * x0 + (1 - a).sqrt() * eps
    v = a.sqrt() * eps - (1 - a).sqrt() * x0
    torch.testing.assert_close(epsilon_from_prediction(v, x_t, abar, "v_prediction"), eps, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(epsilon_from_prediction(x0, x_t, abar, "sample"), eps, rtol=1e-4, atol=1e-4)
    assert epsilon_from_prediction(eps, x_t, abar, "epsilon") is eps
    with pytest.raises(ValueError):
        epsilon_from_prediction(eps, x_t, abar, "flow")


def test_vae_encode_decode_shapes(sd):
    torch.manual_seed(7)
    img = torch.rand(2, 3, 16, 16, requires_grad=True)  # resized to the model's 64 x 64
    lat = sd.encode_images(img)
    assert lat.shape == (2, 4, 16, 16)
    lat.sum().backward()
    assert img.grad is not None and float(img.grad.abs().sum()) > 0
    out = sd.decode_latents(lat.detach())
    assert out.shape == (2, 3, 64, 64) and float(out.min()) >= 0 and float(out.max()) <= 1
    with pytest.raises(ValueError):
        sd.encode_images(torch.rand(1, 4, 8, 8))


def test_memory_options_keep_results(tiny_dir, sd, emb):
    """Attention slicing and accelerate's sequential CPU offload (hooks run even on a CPU device)
    change neither the noise prediction nor the gradient through the VAE encoder."""
    cond, uncond = emb
    low = StableDiffusion.from_pretrained(tiny_dir, "cpu", attention_slicing=True, cpu_offload=True)
    assert hasattr(low.unet, "_hf_hook") and hasattr(low.vae, "_hf_hook")
    x_t, t = torch.randn(1, 4, 16, 16), torch.tensor([250])
    torch.testing.assert_close(low.predict_noise(x_t, t, cond, uncond, 10.0),
                               sd.predict_noise(x_t, t, cond, uncond, 10.0), rtol=1e-4, atol=1e-4)
    grads = []
    for model in (sd, low):
        img = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0)).requires_grad_(True)
        model.encode_images(img, generator=torch.Generator().manual_seed(1)).square().sum().backward()
        grads.append(img.grad)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-5)


def test_missing_weights_give_one_clear_line(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError) as err:
        resolve_model("stabilityai/stable-diffusion-2-1-base")
    msg = str(err.value)
    assert "\n" not in msg and "hf download stabilityai/stable-diffusion-2-1-base" in msg and "--model" in msg
    with pytest.raises(UserError, match="not found"):
        resolve_model(str(tmp_path / "nowhere"))
    (tmp_path / "partial" / "unet").mkdir(parents=True)
    with pytest.raises(UserError, match="lacks vae, text_encoder, tokenizer, scheduler"):
        resolve_model(tmp_path / "partial")
