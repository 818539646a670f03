"""The two kinds of failure: a user error (bad file, flag, value) and everything else (a bug).

A :class:`UserError` is raised where input is read (a file, a flag, a config key) and says in one
line which input, what was expected and what was found. Entry points print it as one line and exit
with status 2 (:func:`l3d.cli.run_cli`, and :mod:`a3_volume_surface.entry` for the Hydra apps).
Any other exception is a bug in this code and keeps its traceback. This module imports nothing
heavy.
"""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any, Optional

__all__ = ["UserError", "NonFiniteError", "RunLockedError", "user_error", "os_error_line"]


class UserError(Exception):
    """An error caused by the user's input or environment; ``str(err)`` is one line."""


class NonFiniteError(UserError):
    """A loss or a parameter became NaN / inf (or absurdly large) during training.

    ``step`` is the step at which it was found and ``name`` what was not finite (``"loss"``, or a
    parameter such as ``"model.layers.3.weight"``)."""

    def __init__(self, message: str, step: Optional[int] = None, name: Optional[str] = None,
                 value: Optional[float] = None):
        super().__init__(message)
        self.step = step
        self.name = name
        self.value = value


class RunLockedError(UserError):
    """Another run is writing into the same output folder."""


def user_error(what: Any, expected: str, found: Any = None, hint: str = "") -> UserError:
    """``UserError("<what>: expected <expected>, found <found>; <hint>")`` -- the one-line shape of
    every input error (``what`` is a file path, ``--flag`` or ``config.key``)."""
    msg = f"{what}: expected {expected}"
    if found is not None:
        msg += f", found {found}"
    if hint:
        msg += f"; {hint}"
    return UserError(" ".join(msg.split()))


# environment errors a user can fix (space, permissions, names) rather than bugs
_ENV_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.ENAMETOOLONG, errno.EACCES, errno.EPERM,
               errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.EEXIST}


def os_error_line(exc: OSError) -> Optional[str]:
    """One line for an ``OSError`` the user can act on (full disk, read-only folder, name too
    long, missing file, ...), naming the file; None for other OS errors (bugs keep tracebacks)."""
    if exc.errno not in _ENV_ERRNOS:
        return None
    what = exc.strerror or type(exc).__name__
    name = exc.filename
    if exc.errno == errno.ENAMETOOLONG and exc.filename2 is not None:
        name = exc.filename2  # a rename onto the user's name: name that one, not the temporary one
    if name is None:
        return what
    if exc.errno == errno.ENAMETOOLONG:
        return f"{what}: {Path(str(name)).name[:60]}... ({len(Path(str(name)).name)} characters; the limit is 255)"
    return f"{what}: {name}"
