"""Progress bars for long loops (features, members, the runner): tqdm on a terminal, silent where
``ALLREP_QUIET=1`` (the runner sets it for the notebooks it executes, so executed copies stay clean)."""
from __future__ import annotations

import os

from tqdm import tqdm  # plain tqdm: tqdm.auto warns (with a path) in kernels without ipywidgets


def bar(iterable=None, **kwargs):
    kwargs.setdefault("disable", os.environ.get("ALLREP_QUIET") == "1")
    kwargs.setdefault("leave", False)
    return tqdm(iterable, **kwargs)
