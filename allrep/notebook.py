"""The one call at the top of every notebook: ``ctx = allrep.notebook.setup("30_ensemble", profile, ...)``.

It seeds everything (:func:`allrep.repro.setup`), sets the display defaults, and returns the
step's :class:`allrep.runner.context.Context` (profile, parameters, declared files). When the runner
executes the notebook it sets ``ALLREP_ACCESS_LOG``; setup then installs an audit hook that logs
every file under the results folder that the kernel opens or replaces, and the runner fails the
step if one of them is not declared in the registry.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from allrep.errors import AllrepError
from allrep.runner.context import Context
from allrep.runner.registry import get_step

ACCESS_LOG = "ALLREP_ACCESS_LOG"


class _AccessLog:
    """sys.addaudithook callback: (read|write, path) of results files, appended as JSON lines."""

    def __init__(self, log: Path, watched: Path):
        self.log, self.watched, self.seen, self.busy = log, str(watched.resolve()) + os.sep, set(), False

    def _record(self, kind: str, path) -> None:
        try:
            p = os.path.abspath(os.fsdecode(path))
        except TypeError:
            return
        if not p.startswith(self.watched) or (kind, p) in self.seen:
            return
        name = os.path.basename(p)
        if name.startswith("."):  # the temporary file of an atomic write; its final name is logged on replace
            return
        self.seen.add((kind, p))
        self.busy = True
        try:
            with open(self.log, "a") as f:
                f.write(json.dumps([kind, p]) + "\n")
        finally:
            self.busy = False

    def __call__(self, event: str, args) -> None:
        if self.busy:
            return
        if event == "open" and args and isinstance(args[0], (str, bytes, os.PathLike)):
            mode = args[1] if len(args) > 1 and isinstance(args[1], str) else "r"
            self._record("write" if any(c in mode for c in "wax+") else "read", args[0])
        elif event == "os.rename" and len(args) >= 2:
            self._record("write", args[1])


def setup(step: str, profile: str, **params) -> Context:
    """Seeds, display settings and the step's context; prints one provenance line."""
    from allrep import repro
    from allrep.profile import load_profile
    from allrep.record.places import output_dir

    cfg = load_profile(profile)
    from allrep.record.seal import refusal

    if (refused := refusal(cfg)) is not None:
        raise AllrepError(refused)
    s = get_step(step)
    expected = set(s.per)
    if set(params) != expected:
        raise AllrepError(f"step {s.name} takes parameters {sorted(expected) or 'none'}, got {sorted(params)}")
    log = os.environ.get(ACCESS_LOG)
    if log:
        sys.addaudithook(_AccessLog(Path(log), output_dir(cfg)))
    env = repro.setup(cfg.seed)
    import matplotlib

    matplotlib.rcParams["figure.dpi"] = 90
    import pandas as pd
    import seaborn as sns

    sns.set_theme(style="whitegrid")
    pd.set_option("display.width", 160, "display.max_columns", 30)
    print(f"{s.name}: profile {cfg.name}; keras backend {env['backend']}; commit {env['commit']}")
    return Context(s, cfg, dict(params), env)


class Glued(dict):
    """The glued values, shown whole: a pandas frame's display stops at 60 rows and prints ``...``,
    so nbval would compare only the first and last keys of a long glue cell."""

    def __repr__(self) -> str:
        width = max(map(len, self), default=0)
        return "\n".join(f"{k:<{width}}  {v}" for k, v in self.items())

    def _repr_html_(self) -> str:
        import pandas as pd

        return pd.Series(self, name="glued", dtype=object).to_frame().to_html()


def glue_values(values: dict) -> Glued:
    """Glue every value for the book (``{glue}`key```) and return them, so that the cell's output
    shows, and nbval compares, every number the book quotes (all of them, never a truncated table)."""
    from myst_nb import glue

    for k, v in values.items():
        glue(k, v, display=False)
    return Glued(values)
