"""The machine and the interpreters a benchmark run uses: which Python, which packages, which CPU."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def default_python(venv: str) -> str:
    candidate = REPO / venv / "bin" / "python"
    return str(candidate) if candidate.exists() else sys.executable


def has_modules(python: str, modules: tuple[str, ...]) -> list[str]:
    """The modules in `modules` that `python` cannot import."""
    if not modules:
        return []
    code = "import importlib.util, sys; print(' '.join(m for m in sys.argv[1:] if importlib.util.find_spec(m) is None))"
    out = subprocess.run([python, "-c", code, *modules], capture_output=True, text=True, check=True).stdout
    return out.split()


def versions(python: str, packages: list[str]) -> dict[str, str]:
    code = (
        "import importlib.metadata as m, json, sys\n"
        "def v(p):\n try: return m.version(p)\n except m.PackageNotFoundError: return None\n"
        "print(json.dumps({p: v(p) for p in sys.argv[1:]}))"
    )
    out = subprocess.run([python, "-c", code, *packages], capture_output=True, text=True, check=True).stdout
    return {k: v for k, v in json.loads(out).items() if v}


def machine_line(pg_version: str, product_versions: dict[str, str]) -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    libs = ", ".join(f"{k} {v}" for k, v in product_versions.items())
    return (
        f"{cpu}, {os.cpu_count()} cores, {mem_gib:.0f} GiB RAM, {platform.system()} {platform.release()}; "
        f"PostgreSQL {pg_version} (local, same machine); Python {platform.python_version()}; {libs}"
    )
