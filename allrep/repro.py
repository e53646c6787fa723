"""Reproducibility set-up: one call at the top of every notebook and script."""
from __future__ import annotations

import os
import platform
import subprocess
import sys


def setup(seed: int = 0, threads: int | None = None) -> dict:
    """Deterministic kernels and seeds; returns the environment facts the book reports.

    Must run before keras is imported for the environment variables to apply.
    """
    os.environ.setdefault("TF_DETERMINISTIC_OPS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("PYTHONHASHSEED", str(seed))
    import keras
    import numpy as np

    keras.utils.set_random_seed(int(seed))
    np.random.seed(int(seed))
    return environment()


def git_commit() -> str:
    from .config import PROJECT_ROOT

    try:
        out = subprocess.run(["git", "-C", str(PROJECT_ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=10)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def environment() -> dict:
    """Versions and hardware, for provenance."""
    import keras
    import numpy as np

    info = dict(python=sys.version.split()[0], platform=platform.platform(), machine=platform.machine(),
                cpus=os.cpu_count(), keras=keras.__version__, backend=keras.backend.backend(), numpy=np.__version__,
                commit=git_commit())
    try:
        import importlib.metadata as md

        for pkg in ("tensorflow", "jax", "keras-tuner", "scikit-learn", "papermill"):
            try:
                info[pkg] = md.version(pkg)
            except md.PackageNotFoundError:
                pass
    except ImportError:
        pass
    return info
