"""Where a run's results, executed notebooks and book live (folders; which run is which is
:mod:`allrep.record.runs`; the file names are the step registry's, :mod:`allrep.runner.registry`).

A committed run writes into the project (its results folder and ``book/<its folder>``); any other profile
into ``$ALLREP_SCRATCH/<profile>`` (default ``scratch/``, ignored by git). Caches are :mod:`allrep.cache`.
"""
from __future__ import annotations

import os
from pathlib import Path

from allrep.profile import PROJECT_ROOT, Profile
from allrep.record.runs import run_of

# the project's own folders beside the development run's results, whatever the profile: the exploratory robustness
# analysis of the registered run (allrep.record.robustness) and the per-CPU run digests (allrep.record.digests)
ROBUSTNESS = PROJECT_ROOT / "results" / "robustness"
DIGESTS = PROJECT_ROOT / "results" / "digests"
TRAINED_UNIVERSES = ROBUSTNESS / "trained"  # the trained universes' files (allrep.record.universes)


def trained_universe_path(dataset: str, name: str) -> Path:
    """The test probabilities of trained universe ``name`` on ``dataset`` (its record: the same name, ``.json``)."""
    return TRAINED_UNIVERSES / f"{dataset}_{name}.csv"


def trained_universe_files() -> list[Path]:
    """The trained universes' files that exist for a (claim, universe) the amendment gives, probabilities and records
    (read here, not through allrep.record.universes, so the runner's registry does not import the analysis)."""
    import yaml

    plan = ROBUSTNESS / "plan_trained.yaml"
    if not plan.is_file():
        return []
    claims = yaml.safe_load(plan.read_text())["claims"]
    paths = [trained_universe_path(ds, n) for ds, names in claims.items() for n in names]
    return [q for p in paths for q in (p, p.with_suffix(".json")) if q.is_file()]


def scratch_root() -> Path:
    return Path(os.environ.get("ALLREP_SCRATCH", PROJECT_ROOT / "scratch"))


def committed(cfg: Profile) -> bool:
    return run_of(cfg).committed


def profile_root(cfg: Profile) -> Path:
    return PROJECT_ROOT if committed(cfg) else scratch_root() / cfg.name


def output_dir(cfg: Profile) -> Path:
    return profile_root(cfg) / run_of(cfg).results


def book_dir(cfg: Profile) -> Path:
    """The root of the book that shows ``cfg``'s results (one book for the committed runs)."""
    return profile_root(cfg) / "book"


def executed_dir(cfg: Profile) -> Path:
    return book_dir(cfg) / run_of(cfg).executed


def ledger_path(cfg: Profile) -> Path:
    """The test-set ledger: one for every committed run (``results/ledger.csv``), so every look at a test part
    is counted in one file; a scratch profile keeps its own."""
    return profile_root(cfg) / "results" / "ledger.csv"


def relative(path: Path | str) -> str:
    """``path`` relative to the project when inside it (for anything committed), else its name."""
    p = Path(path).resolve()
    try:
        return p.relative_to(PROJECT_ROOT).as_posix()
    except ValueError:
        return p.name
