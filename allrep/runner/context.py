"""The runtime context of one executing variant: its profile, its parameters and its declared files.

Notebooks build no path: they ask their :class:`Context` for a name their step declares
(:data:`allrep.runner.registry.STEPS`), and the context refuses any other. A notebook run by hand writes to a
folder of its own (:func:`hand_run_dir`), so it never overwrites what the runner wrote.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from allrep.data.splits import PROTOCOLS
from allrep.errors import AllrepError
from allrep.io import atomic_write_csv, atomic_write_json
from allrep.profile import PROJECT_ROOT, Profile
from allrep.record import places
from allrep.runner.registry import STEPS, Step, declared, expand

RUNNER_ENV = "ALLREP_RUNNER"  # set by the runner (allrep run) for the kernels it starts
WRITE_RESULTS_ENV = "ALLREP_WRITE_RESULTS"  # "1": a hand run writes the profile's own results folder


def _in_kernel() -> bool:
    """Whether this code runs in a Jupyter kernel (an IPython shell with a kernel attached)."""
    import sys

    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return getattr(shell, "kernel", None) is not None


def hand_run_dir(cfg: Profile) -> Path | None:
    """Where a notebook run by hand writes: ``$ALLREP_SCRATCH/interactive/<profile>/results`` (default
    ``scratch/interactive/...``, ignored by git), so that running a committed run's variant in Jupyter, with
    a bare papermill call or under nbval never overwrites the results the runner wrote. None (the profile's own
    folder) for the runner's kernels, outside a kernel (the runner, Dask units, tests), and with
    ``ALLREP_WRITE_RESULTS=1``."""
    import os

    if not _in_kernel() or os.environ.get(RUNNER_ENV) == "1" or os.environ.get(WRITE_RESULTS_ENV) == "1":
        return None
    return places.scratch_root() / "interactive" / cfg.name / "results"


@dataclass
class Context:
    """What one executing variant may touch: its profile, its parameters and its declared files.

    In a notebook run by hand (:func:`hand_run_dir`) its outputs go to the hand-run folder, and an input is read
    from there when a hand run wrote it, else from the profile's own results."""

    step: Step
    cfg: Profile
    params: dict
    env: dict = field(default_factory=dict)
    hand: Path | None = field(default=None, init=False)

    def __post_init__(self):
        self.hand = hand_run_dir(self.cfg)
        if self.hand is not None:
            shown = places.relative(self.hand) if self.hand.resolve().is_relative_to(PROJECT_ROOT) else self.hand
            print(f"hand run: outputs go to {shown}/ (inputs are read from there when a hand run "
                  f"wrote them, else from {places.relative(places.output_dir(self.cfg))}/); `allrep run` writes the "
                  f"profile's own results")

    def _moved(self, p: Path) -> Path:
        return self.hand / p.relative_to(places.output_dir(self.cfg))

    def __getattr__(self, name):  # ctx.backbone, ctx.dataset
        params = self.__dict__.get("params", {})
        if name in params:
            return params[name]
        raise AttributeError(name)

    def _template(self, name: str, kind: str) -> str:
        table = self.step.inputs if kind == "inputs" else self.step.outputs
        if name not in table:
            raise AllrepError(f"step {self.step.name} declares no {kind[:-1]} {name!r} "
                              f"(it declares {', '.join(table) or 'none'}): add it to allrep.runner.registry.STEPS")
        return table[name]

    def paths(self, name: str, kind: str = "inputs", **fixed) -> dict[tuple, Path]:
        found = expand(self.cfg, {**self.params, **fixed}, self._template(name, kind))
        if self.hand is None:
            return found
        if kind == "outputs":
            return {k: self._moved(p) for k, p in found.items()}
        return {k: m if (m := self._moved(p)).is_file() else p for k, p in found.items()}

    def path(self, name: str, kind: str = "inputs", **fixed) -> Path:
        found = self.paths(name, kind, **fixed)
        if len(found) != 1:
            raise AllrepError(f"{self.step.name}: {kind[:-1]} {name!r} names {len(found)} files; fix the placeholders")
        return next(iter(found.values()))

    def output(self, name: str, **fixed) -> Path:
        return self.path(name, "outputs", **fixed)

    def each_split(self) -> list[tuple[str, int, pd.DataFrame]]:
        """(protocol, repeat, split frame) of every split of the variant's dataset: the paper split,
        then each grouped repeat."""
        out = []
        for protocol in PROTOCOLS:
            frame = self.read_csv("splits", protocol=protocol)
            out += [(protocol, int(r), part) for r, part in frame.groupby("repeat", sort=True)]
        return out

    def read_csv(self, name: str, **fixed) -> pd.DataFrame:
        return _read_csv(self.path(name, **fixed), self.cfg)

    def read_all_csv(self, name: str) -> pd.DataFrame:
        """Every file a template names, concatenated (a missing one is an error naming the step that writes it)."""
        return pd.concat([_read_csv(p, self.cfg) for p in sorted(self.paths(name).values())], ignore_index=True)

    def read_json(self, name: str, **fixed):
        p = self.path(name, **fixed)
        _require(p, self.cfg)
        return json.loads(p.read_text())

    def read_all_json(self, name: str) -> dict:
        out = {}
        for key, p in self.paths(name).items():
            _require(p, self.cfg)
            out[key] = json.loads(p.read_text())
        return out

    def write_csv(self, df: pd.DataFrame, name: str, **fixed) -> Path:
        return atomic_write_csv(df, self.output(name, **fixed))

    def write_json(self, obj, name: str, **fixed) -> Path:
        return atomic_write_json(self.output(name, **fixed), obj)


def _require(p: Path, cfg: Profile | None = None) -> None:
    if p.is_file():
        return
    writer = "an earlier step"
    if cfg is not None:
        writer = next((s.name for s in STEPS for v in s.variants(cfg) if p in declared(cfg, s, v, "outputs")), writer)
    raise AllrepError(f"{places.relative(p)} does not exist yet: run {writer} first "
                      f"(allrep run --profile {cfg.name if cfg else 'NAME'} --steps {writer[:2]})")


def _read_csv(p: Path, cfg: Profile | None = None) -> pd.DataFrame:
    _require(p, cfg)
    return pd.read_csv(p)
