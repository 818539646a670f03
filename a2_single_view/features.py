"""Precompute ResNet-18 features of the renders (``feats.npy`` beside each model's renders).

    python -m a2_single_view.features [--data auto] [--classes chair] [--splits train val test]

Writes ``r2n2/ShapeNetRendering/<synset>/<model>/rendering/feats.npy``: a (24, 512) float32
array, one row per view (NaN rows for views that were not computed), and ``feats.json``
naming the encoder (``resnet18-imagenet`` or ``resnet18-random-seed0``). Files made by another
encoder are recomputed; a ``feats.npy`` without ``feats.json`` (e.g. shipped with the data) is
trusted. ``train_model --load_feat`` calls the same code for whatever is missing.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import List, Sequence

import numpy as np
import torch

from l3d.cli import report, run_cli, script_parser
from l3d.run import atomic_path
from l3d.train import choose_device, progress

from .common import add_data_flags, resolve_data
from .data import NUM_VIEWS, R2N2, EmptySplit, ModelRef, load_features, rendering_dir
from .models import FEAT_DIM, Encoder


def _tag_ok(rd: Path, tag: str) -> bool:
    """Whether existing features in ``rd`` come from encoder ``tag`` (no feats.json: trusted)."""
    info = rd / "feats.json"
    if not info.is_file():
        return True
    try:
        meta = json.loads(info.read_text(encoding="utf-8"))
    except ValueError:  # damaged (JSON or encoding): the features are computed again
        return False
    return isinstance(meta, dict) and meta.get("encoder") == tag


def _needs(root: Path, ref: ModelRef, tag: str) -> List[int]:
    """Views of ``ref`` without usable features for encoder ``tag``."""
    rd = rendering_dir(root, ref.synset, ref.model_id)
    fp = rd / "feats.npy"
    if not fp.is_file() or not _tag_ok(rd, tag):
        return list(ref.views)
    arr = load_features(fp)
    if arr is None:
        print(f"note: {fp} is damaged; computing its features again", file=sys.stderr)
        return list(ref.views)
    return [v for v in ref.views if v >= arr.shape[0] or not np.isfinite(arr[v]).all()]


@torch.no_grad()
def ensure_features(dataset: R2N2, encoder: Encoder, device: torch.device, batch_size: int = 32,
                    verbose: bool = True) -> int:
    """Compute and write the missing features of every (model, view) of ``dataset``.

    Returns the number of views computed.
    """
    root = dataset.root
    todo = [(i, v) for i, ref in enumerate(dataset.models) for v in _needs(root, ref, encoder.tag)]
    if not todo:
        return 0
    if verbose:
        print(f"computing {encoder.tag} features of {len(todo)} views (once; saved as feats.npy)", file=sys.stderr)
    encoder = encoder.to(device).eval()
    # items of the data set by (model, view), to read their images
    where = {(i, v): k for k, (i, v) in enumerate(dataset.items)}
    new = {}
    for s in progress(range(0, len(todo), batch_size), "features"):
        chunk = todo[s:s + batch_size]
        imgs = torch.stack([dataset.image(where[iv]) for iv in chunk]).to(device)
        f = encoder(imgs).float().cpu().numpy()  # (b, 512)
        for (i, v), row in zip(chunk, f):
            new.setdefault(i, {})[v] = row
    for i, rows in new.items():
        ref = dataset.models[i]
        rd = rendering_dir(root, ref.synset, ref.model_id)
        fp, info = rd / "feats.npy", rd / "feats.json"
        n = max(NUM_VIEWS, max(rows) + 1)
        arr = np.full((n, FEAT_DIM), np.nan, dtype=np.float32)
        old = load_features(fp) if fp.is_file() and _tag_ok(rd, encoder.tag) else None
        if old is not None:  # keep the rows already there
            k = min(len(old), n)
            arr[:k] = old[:k].astype(np.float32)
        for v, row in rows.items():
            arr[v] = row
        with atomic_path(fp) as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, arr)
        with atomic_path(info) as tmp:
            Path(tmp).write_text(json.dumps({"encoder": encoder.tag}))
        dataset._feats.pop(i, None)
    return len(todo)


def main(argv=None):
    ap = script_parser(__doc__, "a2_single_view/features", presets={"quick": {"data_preset": "quick"}})
    add_data_flags(ap)
    ap.add_argument("--splits", nargs="+", default=["train", "val", "test"], help="splits to process")
    ap.add_argument("--pretrained", choices=["auto", "imagenet", "random"], default="auto",
                    help="ResNet-18 weights: ImageNet from the local torch cache when present (auto), or random")
    ap.add_flag("batch_size", default=32, help="images per encoder call")
    args = ap.parse_args(argv)
    device = choose_device(args.device)
    choice = resolve_data(args)
    encoder = Encoder(args.pretrained)
    t = time.perf_counter()
    done = {}
    for split in args.splits:
        try:
            ds = R2N2(choice.root, choice.split_file, split, args.class_names, inputs="images")
        except EmptySplit as e:  # e.g. no val models of a class: nothing to compute
            print(f"note: skipping split {split}: {e}", file=sys.stderr)
            continue
        done[split] = ensure_features(ds, encoder, device, args.batch_size)
    report(args.output_dir, {"encoder": encoder.tag, "views_computed": done, "time_s": time.perf_counter() - t,
                             "data_root": str(choice.root)})


if __name__ == "__main__":
    run_cli(main)


__all__: Sequence[str] = ("ensure_features", "main")
