"""Shortcut baselines: what a classifier gets without looking at cells, per split."""
from __future__ import annotations

import numpy as np
import pandas as pd

from allrep.data.dataset import manifest
from allrep.evaluate.metrics import binary_metrics


def size_only_baseline(splits: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """Accuracy of a depth-2 decision tree that sees only image width and height, per split
    (``splits``: the split files of ``dataset``, both protocols, concatenated)."""
    from sklearn.tree import DecisionTreeClassifier

    size = {it.id: (it.width, it.height) for it in manifest("combined")}
    rows = []
    for protocol in ("paper", "grouped"):
        sp = splits[splits["protocol"] == protocol]
        for r, part in sp.groupby("repeat"):
            tr, te = part[part["role"] != "test"], part[part["role"] == "test"]
            clf = DecisionTreeClassifier(max_depth=2, random_state=0)
            clf.fit(np.array([size[i] for i in tr["id"]]), tr["label"])
            p = clf.predict_proba(np.array([size[i] for i in te["id"]]))
            p_all = p[:, list(clf.classes_).index(1)] if 1 in clf.classes_ else np.zeros(len(te))
            rows.append(dict(protocol=protocol, repeat=int(r), dataset=dataset, model="image size only (tree)",
                             **binary_metrics(te["label"], p_all)))
    return pd.DataFrame(rows)


def majority_baseline(splits: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """The training part's majority class, per split."""
    rows = []
    for protocol in ("paper", "grouped"):
        for r, part in splits[splits["protocol"] == protocol].groupby("repeat"):
            tr, te = part[part["role"] != "test"], part[part["role"] == "test"]
            maj = int(tr["label"].mean() > 0.5)
            rows.append(dict(protocol=protocol, repeat=int(r), dataset=dataset, model="majority class",
                             **binary_metrics(te["label"], np.full(len(te), float(maj)))))
    return pd.DataFrame(rows)
