"""What the two Hydra entry points need at import time (kept free of torch, so ``--help`` and
``--cfg job`` answer quickly): the config folder, the typed schema and the one-line error wrapper.

``main = hydra_app("box", "a3_volume_surface.volume_rendering_main", "volume")`` makes the entry
point: ``main()`` is the Hydra command line (``sys.argv``; ``--help``, ``--cfg job`` and every
override work as in Hydra), ``main(["--config-name=box", "quick=true"])`` runs the same task in
this process through Hydra's compose API (demos, tests). Either way a user error -- a misspelt
key, a value of the wrong type or out of range, a bad input file, an output folder in use --
prints ``error: <one line>`` and exits with status 2; a bug keeps its traceback.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, Callable, List, Optional, Sequence, Set, Tuple

# configs/a3 of the repository, as an absolute path so the entry points also work when called
# in-process (tests) and not only through ``python -m``
CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "configs" / "a3")

__all__ = ["CONFIG_DIR", "hydra_app", "override_keys", "split_argv", "config_error"]


def override_keys(overrides: Sequence[str]) -> Set[str]:
    """The dotted keys that command-line overrides set (``a.b=1``, ``+a.b=1``, ``++a.b=1``, ``~a.b``)."""
    keys = set()
    for ov in overrides:
        key = str(ov).split("=", 1)[0].lstrip("+~").strip()
        if key and not key.startswith("hydra"):
            keys.add(key)
    return keys


def split_argv(argv: Sequence[str], default_config: str) -> Tuple[str, List[str]]:
    """(config name, overrides) of an in-process command line such as
    ``["--config-name=train_box", "quick=true"]`` (``--config-name X`` and ``-cn X`` too)."""
    from l3d.errors import user_error

    name, overrides = default_config, []
    it = iter(argv)
    for tok in it:
        if tok.startswith("--config-name=") or tok.startswith("-cn="):
            name = tok.split("=", 1)[1]
        elif tok in ("--config-name", "-cn"):
            name = next(it, "")
        elif tok.startswith("-"):
            raise user_error(tok, "--config-name=NAME or key=value overrides in an in-process run", tok)
        else:
            overrides.append(tok)
    return name, overrides


def config_error(exc: BaseException) -> Optional[str]:
    """One line for an error Hydra or OmegaConf raise while composing the config (a misspelt key,
    a value of the wrong type, an unknown config name, a malformed override); None otherwise."""
    from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException
    from omegaconf.errors import OmegaConfBaseException

    if not isinstance(exc, (ConfigCompositionException, MissingConfigException, OverrideParseException,
                            OmegaConfBaseException)):
        return None
    cause = exc if isinstance(exc, OmegaConfBaseException) else exc.__cause__
    head = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, MissingConfigException):
        return f"--config-name: no config named {getattr(exc, 'missing_cfg_file', None) or head} in {CONFIG_DIR}"
    if isinstance(cause, OmegaConfBaseException):
        key = getattr(cause, "full_key", None)
        msg = str(getattr(cause, "msg", "") or cause).strip().splitlines()[0]
        if "not in" in msg or "not in struct" in msg:
            msg = f"no such key in the A3 config schema ({msg})"
        return f"{key}: {msg}" if key else f"{head}: {msg}"
    return head


@contextlib.contextmanager
def _full_errors():
    # Hydra would print its own multi-line report and exit 1; with HYDRA_FULL_ERROR the exception
    # reaches us and becomes one line (exit 2)
    old = os.environ.get("HYDRA_FULL_ERROR")
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = old


def hydra_app(config_name: str, module: str, kind: str) -> Callable[..., Any]:
    """The entry point ``main(argv=None)`` of a Hydra app (see the module docstring).

    ``kind`` is ``"volume"`` or ``"surface"`` (:func:`a3_volume_surface.common.run_app`)."""
    from .schema import register

    register()

    def task(cfg, given: Set[str], argv: Optional[List[str]]):
        from .common import run_app

        return run_app(cfg, given, module, kind, argv)

    def hydra_cli() -> Any:
        import hydra

        state = {"started": False}

        @hydra.main(config_path=CONFIG_DIR, config_name=config_name, version_base=None)
        def app(cfg):
            from hydra.core.hydra_config import HydraConfig

            from l3d.cli import guarded

            state["started"] = True
            # user errors exit here with one line (before Hydra would add its own report)
            return guarded(task, cfg, override_keys(HydraConfig.get().overrides.task), None)

        try:
            with _full_errors():
                return app()
        except Exception as exc:
            line = None if state["started"] else config_error(exc)
            if line is None:
                raise
            from l3d.errors import UserError

            raise UserError(line) from exc

    def composed(argv: List[str]) -> Any:
        from hydra import compose, initialize_config_dir

        from l3d.errors import UserError

        name, overrides = split_argv(argv, config_name)
        try:
            with initialize_config_dir(config_dir=CONFIG_DIR, version_base=None):
                cfg = compose(config_name=name, overrides=overrides)
        except Exception as exc:
            line = config_error(exc)
            if line is None:
                raise
            raise UserError(line) from exc
        return task(cfg, override_keys(overrides), list(argv))

    def main(argv: Optional[Sequence[str]] = None) -> Any:
        from l3d.cli import guarded

        if argv is None:
            return guarded(hydra_cli)
        return guarded(composed, list(argv))

    main.__doc__ = f"Run ``python -m {module}`` (``argv``: its arguments, run in this process)."
    return main
