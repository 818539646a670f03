"""What the two Hydra entry points need at import time (kept free of torch, so ``--help`` and
``--cfg job`` answer quickly): the config folder and the one-line error wrapper."""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path
from typing import Callable

# configs/a3 of the repository, as an absolute path so the entry points also work when called
# in-process (tests) and not only through ``python -m``
CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "configs" / "a3")


def hydra_task(fn: Callable) -> Callable:
    """Wrap a Hydra task function: expected user errors (l3d.train.USER_ERRORS) print
    ``error: <one line>`` and exit with status 2; Ctrl-C exits with 130. ``L3D_DEBUG=1`` re-raises."""

    @functools.wraps(fn)
    def task(cfg):
        from l3d.train import USER_ERRORS

        debug = os.environ.get("L3D_DEBUG", "") not in ("", "0")
        try:
            return fn(cfg)
        except USER_ERRORS as exc:
            if debug:
                raise
            msg = " ".join(str(exc).split()) or type(exc).__name__
            print(f"error: {msg}", file=sys.stderr, flush=True)
            sys.exit(2)
        except KeyboardInterrupt:
            if debug:
                raise
            print("error: interrupted", file=sys.stderr, flush=True)
            sys.exit(130)

    return task
