"""What the two Hydra entry points need at import time (kept free of torch, so ``--help`` and
``--cfg job`` answer quickly): the config folder and the one-line error wrapper."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Callable

# configs/a3 of the repository, as an absolute path so the entry points also work when called
# in-process (tests) and not only through ``python -m``
CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "configs" / "a3")


def hydra_task(fn: Callable) -> Callable:
    """Wrap a Hydra task function with :func:`l3d.cli.guarded`: user errors print
    ``error: <one line>`` and exit with status 2, Ctrl-C exits with 130, bugs keep their traceback."""

    @functools.wraps(fn)
    def task(cfg):
        from l3d.cli import guarded

        return guarded(fn, cfg)

    return task
