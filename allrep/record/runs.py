"""The runs of this project: which profile makes which run, where each run's files live, what it is called.

The one owner of that knowledge; :mod:`allrep.record.places`, the book and the ledger ask here.

* **confirmatory** (profile ``confirmatory``): the pre-registered run (``book/preregistration.md``), scored
  once and sealed (:mod:`allrep.record.seal`); committed, ``results/confirmatory/`` and
  ``book/confirmatory/``; the book leads with it.
* **development** (profile ``paper``): the run the recipe and the verdict rule were built on, whose test parts
  were scored many times; committed, ``results/`` and ``book/executed/``; its pages say "(development)".
* **smoke**, and any other profile: a scratch run, in ``$ALLREP_SCRATCH/<profile>/`` (default ``scratch/``,
  ignored by git), so it can never overwrite the committed book.
"""
from __future__ import annotations

from dataclasses import dataclass

from allrep.profile import Profile, load_profile


@dataclass(frozen=True)
class Run:
    profile: str  # the profile that makes it
    label: str  # what the book and the ledger call it
    caption: str  # its part of the book
    results: str  # its results folder, under its root (the project for a committed run)
    executed: str  # its executed notebooks' folder, under its book
    committed: bool = False  # the project commits its files
    headline: bool = False  # the book leads with it
    development: bool = False  # its pages say "(development)"; its split seeds are development seeds

    @property
    def tables(self) -> str:
        """Where the book's generated tables of this run go, under the book."""
        return "_generated" if self.executed == SCRATCH_EXECUTED else f"_generated/{self.executed}"


SCRATCH_EXECUTED = "executed"
_COMMITTED = (
    Run("confirmatory", "confirmatory", "Confirmatory run", "results/confirmatory", "confirmatory", committed=True,
        headline=True),
    Run("paper", "development", "Development run", "results", SCRATCH_EXECUTED, committed=True, development=True),
)


def run_of(profile: str | Profile) -> Run:
    """The run a profile makes (a scratch run for any profile the project does not commit)."""
    name = profile if isinstance(profile, str) else profile.name
    for run in _COMMITTED:
        if run.profile == name:
            return run
    return Run(name, name, f"Executed notebooks ({name})", "results", SCRATCH_EXECUTED)


def committed() -> tuple[Run, ...]:
    """The committed runs, the headline first."""
    return _COMMITTED


def headline() -> Run:
    return next(r for r in _COMMITTED if r.headline)


def development() -> Run:
    return next(r for r in _COMMITTED if r.development)


def registered() -> Run:
    """The pre-registered run (``preregistration/`` freezes its splits and settings)."""
    return headline()


def development_seeds() -> tuple[int, ...]:
    """The split seeds of the development run: every test look with them is a development look."""
    return (load_profile(development().profile).seed,)


def shown_with(cfg: Profile) -> tuple[Run, ...]:
    """The runs the book of ``cfg`` shows, headline first: both committed runs, or a scratch run alone."""
    run = run_of(cfg)
    return committed() if run.committed else (run,)
