"""Rendering recipes shared by the assignments: turntables, colourings, frame layout.

Camera conventions: :mod:`l3d.cameras`.
"""

from __future__ import annotations

from typing import Optional, Sequence, Union

import numpy as np
import torch

from .cameras import FoVPerspectiveCameras, Size, turntable_cameras
from .shading import Materials, PointLights, render_mesh, render_points
from .structures import Meshes, Pointclouds, TexturesVertex

Colour = Union[float, Sequence[float], torch.Tensor]


def with_vertex_colors(mesh: Meshes, colors: Colour) -> Meshes:
    """The same geometry with vertex-colour textures: one (3,) colour for all, or (sum V, 3)."""
    v = mesh.verts_packed()
    c = torch.as_tensor(colors, dtype=v.dtype, device=v.device)
    c = c.expand_as(v) if c.dim() == 1 else c
    return Meshes(mesh.verts_list(), mesh.faces_list(),
                  TexturesVertex(list(torch.split(c, mesh.num_verts_per_mesh().tolist()))))


def normalized_xyz_colors(points: torch.Tensor) -> torch.Tensor:
    """(P, 3) colours ``(p - min) / (max - min)`` per axis (the course's "normalised xyz")."""
    lo, hi = points.amin(0), points.amax(0)
    return (points - lo) / (hi - lo).clamp(min=1e-8)


def light_at_cameras(cameras: FoVPerspectiveCameras, **kw) -> PointLights:
    """Point lights placed at each camera's centre (a headlight)."""
    return PointLights(location=cameras.get_camera_center(), **kw)


def render_mesh_turntable(
    mesh: Meshes,
    num_frames: int = 36,
    dist: float = 3.0,
    elev: float = 0.0,
    fov: float = 60.0,
    image_size: Size = 256,
    at: Colour = (0.0, 0.0, 0.0),
    up: Colour = (0.0, 1.0, 0.0),
    light_location: Optional[Colour] = None,
    background: Colour = (1.0, 1.0, 1.0),
    azim_start: float = 0.0,
    materials: Optional[Materials] = None,
    shader: str = "phong",
    batch_size: int = 8,
) -> torch.Tensor:
    """(T, H, W, 3) frames of a 360-degree turntable around one mesh.

    ``light_location`` None puts a light at every camera (the object is lit from the front in
    every frame); otherwise a fixed world-space light.
    """
    device, dtype = mesh.device, mesh.verts_packed().dtype
    cams = turntable_cameras(num_frames, dist, elev, fov, azim_start, azim_start + 360.0, at, up, device, dtype)
    lights = light_at_cameras(cams) if light_location is None else PointLights(location=light_location)
    with torch.no_grad():
        frames = render_mesh(mesh, cams, image_size, lights=lights, materials=materials,
                             background=background, shader=shader, batch_size=batch_size)
    return frames[..., :3].clamp(0, 1)


def render_points_turntable(
    points: torch.Tensor,
    colors: Optional[torch.Tensor] = None,
    num_frames: int = 36,
    dist: float = 3.0,
    elev: float = 0.0,
    fov: float = 60.0,
    image_size: Size = 256,
    radius: float = 0.01,
    at: Colour = (0.0, 0.0, 0.0),
    up: Colour = (0.0, 1.0, 0.0),
    background: Colour = (1.0, 1.0, 1.0),
    azim_start: float = 0.0,
    batch_size: int = 8,
) -> torch.Tensor:
    """(T, H, W, 3) frames of a 360-degree turntable around a point cloud (P, 3), colours (P, 3)."""
    dtype = points.dtype
    cams = turntable_cameras(num_frames, dist, elev, fov, azim_start, azim_start + 360.0, at, up, points.device, dtype)
    cloud = Pointclouds([points], None if colors is None else [colors])
    with torch.no_grad():
        frames = render_points(cloud, cams, image_size, radius=radius, background=background, batch_size=batch_size)
    return frames[..., :3].clamp(0, 1)


def side_by_side(*frames: torch.Tensor) -> torch.Tensor:
    """Concatenate frame stacks (T, H, W, 3) along the width (same T and H)."""
    return torch.cat([f.to(frames[0].dtype) for f in frames], dim=-2)


def apply_colormap(values: torch.Tensor, cmap: str = "viridis", vmin: Optional[float] = None,
                   vmax: Optional[float] = None) -> torch.Tensor:
    """(..., 3) colours of ``values`` through a matplotlib colormap (clamped to [vmin, vmax])."""
    import matplotlib

    v = values.detach().float().cpu()
    lo = float(v.min()) if vmin is None else vmin
    hi = float(v.max()) if vmax is None else vmax
    t = ((v - lo) / max(hi - lo, 1e-12)).clamp(0, 1).numpy()
    rgb = matplotlib.colormaps[cmap](t)[..., :3]
    return torch.from_numpy(np.ascontiguousarray(rgb, dtype=np.float32)).to(values.device)
