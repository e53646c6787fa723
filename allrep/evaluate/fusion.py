"""Fusing the backbones' ensemble-mean scores.

``S`` is an array (models, images) of p(ALL), one row per backbone (its
ensemble mean). Each rule returns a fused p(ALL) whose argmax (> 0.5) is the
decision:

* ``sum``     (the paper's): mean of the scores, i.e. the sum rule normalised;
* ``product``: prod p / (prod p + prod (1-p));
* ``max``:     the score of the model most confident in either class;
* ``vote``:    fraction of models voting ALL.

Ties (a fused score of exactly 0.5: equal sums, a 2-2 vote, two models equally
confident in opposite classes) go to *healthy*, as every decision in
:mod:`allrep.evaluate.metrics` does (ALL only when p > 0.5). A tie rule favouring ALL
would inflate sensitivity on exactly the cases the models cannot decide.
"""
from __future__ import annotations

import numpy as np

from allrep.errors import AllrepError

EPS = 1e-12


def fuse(S, rule: str = "sum") -> np.ndarray:
    S = np.atleast_2d(np.asarray(S, dtype=float))
    if rule == "sum":
        return S.mean(0)
    if rule == "product":
        a = np.exp(np.log(np.clip(S, EPS, 1)).sum(0))
        b = np.exp(np.log(np.clip(1 - S, EPS, 1)).sum(0))
        return a / (a + b)
    if rule == "max":
        conf = np.abs(S - 0.5)
        best = conf.max(0)
        # among the most confident models: if they disagree it is a tie (0.5)
        hi = np.where(conf >= best - 1e-9, S, np.nan)  # equal confidence up to rounding
        up, down = np.nanmax(hi, 0), np.nanmin(hi, 0)
        return np.where((up > 0.5) & (down < 0.5), 0.5, np.where(up > 0.5, up, down))
    if rule == "vote":
        return (S > 0.5).mean(0)
    raise AllrepError(f"unknown fusion rule {rule!r}: choose sum, product, max or vote")
