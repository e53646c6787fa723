"""The cache of expensive work: ``$ALLREP_CACHE`` (default ``.cache/`` in the project, ignored by git).

:func:`folder` is the one place a cache folder is named: one kind of work per top-level folder. Every file
in it is written atomically (:mod:`allrep.io`) under a key built from exactly what it depends on
(:func:`allrep.train.members.cache_key`), so a killed run resumes and a changed setting never reads a
stale result.
"""
from __future__ import annotations

import os
from pathlib import Path

from allrep.errors import AllrepError
from allrep.profile import PROJECT_ROOT

KINDS = {
    "features": "backbone features, one file per image and view (allrep.train.features)",
    "members": "trained heads: ensemble members, plain heads, tuning trials (allrep.train.members)",
    "tuning": "the Bayesian searches' oracles (keras-tuner projects)",
    "scratch": "whole networks trained from random weights (step 35)",
    "final": "the final models of allrep train-final",
}


def cache_dir() -> Path:
    return Path(os.environ.get("ALLREP_CACHE", PROJECT_ROOT / ".cache"))


def folder(kind: str, *parts: str, root: Path | str | None = None) -> Path:
    """``<cache>/<kind>/<parts...>``; ``root`` replaces the cache folder (tests)."""
    if kind not in KINDS:
        raise AllrepError(f"unknown cache kind {kind!r}: choose from {', '.join(KINDS)}")
    return Path(root if root is not None else cache_dir()).joinpath(kind, *parts)


def census() -> dict:
    """How much work the cache already holds: feature files (one per image and backbone), ensemble members and
    from-scratch members. All zero: the run computes everything."""
    return dict(features=sum(1 for _ in folder("features").glob("*/*.npz")),
                members=sum(1 for _ in folder("members").glob("*/*.json")),
                scratch=sum(1 for _ in folder("scratch").glob("*/*.json")))
