"""Where a profile's results, executed notebooks and caches live (folders only; file names
belong to the step registry, :mod:`allrep.registry`).

* The paper profile (the development run) writes into the project: ``results/`` and ``book/executed``
  (committed).
* The confirmatory profile (the pre-registered run, ``book/preregistration.md``) writes into the project
  too, beside it: ``results/confirmatory/`` and ``book/confirmatory/`` (committed); one book shows both.
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


COMMITTED = ("paper", "confirmatory")  # the profiles whose results the project commits


def committed(cfg: Profile) -> bool:
    return cfg.name in COMMITTED


def profile_root(cfg: Profile) -> Path:
    return PROJECT_ROOT if committed(cfg) else scratch_root() / cfg.name


def output_dir(cfg: Profile) -> Path:
    sub = "results/confirmatory" if cfg.name == "confirmatory" else "results"
    return profile_root(cfg) / sub


def book_dir(cfg: Profile) -> Path:
    """The root of the book that shows ``cfg``'s results (one book for both committed profiles)."""
    return profile_root(cfg) / "book"


def executed_dir(cfg: Profile) -> Path:
    return book_dir(cfg) / ("confirmatory" if cfg.name == "confirmatory" else "executed")


def ledger_path(cfg: Profile) -> Path:
    """The test-set ledger: one for every split set the project committed (``results/ledger.csv``), so the
    development and the confirmatory looks are counted in one file; a scratch profile keeps its own."""
    return profile_root(cfg) / "results" / "ledger.csv"


def cache_dir() -> Path:
    return Path(os.environ.get("ALLREP_CACHE", PROJECT_ROOT / ".cache"))


def relative(path: Path | str) -> str:
    """``path`` relative to the project when inside it (for anything committed), else its name."""
    p = Path(path).resolve()
    try:
        return p.relative_to(PROJECT_ROOT).as_posix()
    except ValueError:
        return p.name
