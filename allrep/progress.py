"""Progress bars for long loops (features, members, the runner): tqdm on a terminal, silent where
``ALLREP_QUIET=1`` (the runner sets it for the notebooks it executes, so executed copies stay clean)."""
from __future__ import annotations

import os

from tqdm import tqdm  # plain tqdm: tqdm.auto warns (with a path) in kernels without ipywidgets


def bar(iterable=None, **kwargs):
    kwargs.setdefault("disable", os.environ.get("ALLREP_QUIET") == "1")
    kwargs.setdefault("leave", False)
    return tqdm(iterable, **kwargs)


_ATTACHED = {"bar": None, "heads": 0}


def attach(b) -> None:
    """Show, on the runner's bar, the heads trained in this process (``None`` detaches)."""
    _ATTACHED.update(bar=b, heads=0)


def head_done() -> None:
    """One more head trained and cached (the member engine calls this); shown on the attached bar."""
    b = _ATTACHED["bar"]
    if b is not None:
        _ATTACHED["heads"] += 1
        b.set_postfix_str(f"{_ATTACHED['heads']} heads trained", refresh=True)
