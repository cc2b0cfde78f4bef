"""Temporary files: where they go, and a clear error when that place cannot be written.

In production the container's root file system is read-only; the task definition declares the
writable volumes and sets TMPDIR to one of them. `tempfile` honours TMPDIR but, when nothing it
tries is writable, says only "No usable temporary directory found": this says which directory,
why, and what to set.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


class ScratchError(RuntimeError):
    """No writable temporary directory: names the path and what to change."""


def _advice(path: str, reason: str) -> str:
    return (
        f"cannot create temporary files in {path} ({reason}): set TMPDIR to a writable directory "
        "(in the ECS task, a declared volume the container user owns; the root file system is read-only)"
    )


def temp_root() -> str:
    """The directory temporary files go to: $TMPDIR if set, else the platform default."""
    return os.environ.get("TMPDIR") or tempfile.gettempdir()


def check_writable() -> str:
    """Fail early, before any work, when temporary files cannot be written; returns the directory."""
    root = temp_root()
    try:
        probe = tempfile.mkdtemp(prefix=".weward-probe-", dir=root)
    except OSError as exc:
        raise ScratchError(_advice(root, exc.strerror or exc.__class__.__name__)) from None
    os.rmdir(probe)
    return root


def make_workdir(prefix: str) -> Path:
    """A new private directory for one run's temporary files (the caller removes it)."""
    root = temp_root()
    try:
        return Path(tempfile.mkdtemp(prefix=prefix, dir=root))
    except OSError as exc:
        raise ScratchError(_advice(root, exc.strerror or exc.__class__.__name__)) from None
