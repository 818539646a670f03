"""Flags and loaders shared by the Assignment 1 scripts."""

from __future__ import annotations

import argparse

from l3d.data import load_mesh_or_standin
from l3d.io import load_obj
from l3d.structures import Meshes

MESH_COLOR = (0.7, 0.7, 1.0)  # the course's default mesh colour


def add_mesh_flags(ap: argparse.ArgumentParser, default_rel: str = "a1/cow.obj", name: str = "cow_path") -> None:
    """``--<name>`` (an OBJ; default: <data root>/<default_rel>) and ``--data auto|synthetic``."""
    ap.add_argument(f"--{name}", default=None,
                    help=f"OBJ file to render (default: $L3D_DATA/{default_rel}, or the built-in procedural mesh when absent)")
    ap.add_argument("--data", choices=["auto", "synthetic"], default="auto",
                    help="synthetic forces the built-in procedural mesh instead of the course file")
    ap.set_defaults(_mesh_rel=default_rel, _mesh_flag=name)


def load_mesh(args: argparse.Namespace, device) -> Meshes:
    """The mesh named by the flags of :func:`add_mesh_flags` on ``device``."""
    path = getattr(args, args._mesh_flag)
    if path is not None and args.data != "synthetic":
        return load_obj(path, device=device)
    return load_mesh_or_standin(args._mesh_rel, device=device, force_synthetic=args.data == "synthetic")
