"""Assignment 4, Q2: score distillation sampling (SDS) with Stable Diffusion through diffusers.

Modules:

* :mod:`.sds` - the SDS maths (guidance, weights, surrogate loss) and :class:`~.sds.StableDiffusion`
  (loading from a local folder / the local Hugging Face cache, text embeddings, VAE, ``sds_loss``).
* :mod:`.views` - random and orbit cameras, view-dependent ("front / side / back view") embeddings.
* :mod:`.nerf` - the DreamFusion NeRF (density blob prior, albedo, normals, shading, regularisers).
* :mod:`.tiny` - a tiny random checkpoint for tests, demos and benchmarks (no downloads here).
* CLIs: :mod:`.image_optimization` (Q2.1), :mod:`.mesh_optimization` (Q2.2),
  :mod:`.nerf_optimization` (Q2.3, Q2.4.1 with ``--view_dep_text 1``), :mod:`.demo`.

diffusers / transformers are imported only when a model is loaded, so the geometry modules stay
light.
"""
