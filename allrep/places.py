"""Where a profile's results, executed notebooks and caches live (folders only; file names
belong to the step registry, :mod:`allrep.registry`).

* The paper profile writes into the project: ``results/`` and ``book/executed`` (committed).
* Every other profile writes into ``$ALLREP_SCRATCH/<profile>`` (default ``scratch/``, ignored by
  git), so a smoke run can never overwrite the committed book.
* Caches (features, tuner trials, members) live in ``$ALLREP_CACHE`` (default ``.cache/``, ignored).
"""
from __future__ import annotations

import os
from pathlib import Path

from .profile import PROJECT_ROOT, Profile


def scratch_root() -> Path:
    return Path(os.environ.get("ALLREP_SCRATCH", PROJECT_ROOT / "scratch"))


def profile_root(cfg: Profile) -> Path:
    return PROJECT_ROOT if cfg.name == "paper" else scratch_root() / cfg.name


def output_dir(cfg: Profile) -> Path:
    return profile_root(cfg) / "results"


def book_dir(cfg: Profile) -> Path:
    return profile_root(cfg) / "book"


def executed_dir(cfg: Profile) -> Path:
    return book_dir(cfg) / "executed"


def cache_dir() -> Path:
    return Path(os.environ.get("ALLREP_CACHE", PROJECT_ROOT / ".cache"))


def relative(path: Path | str) -> str:
    """``path`` relative to the project when inside it (for anything committed), else its name."""
    p = Path(path).resolve()
    try:
        return p.relative_to(PROJECT_ROOT).as_posix()
    except ValueError:
        return p.name
