"""The camera check: do the models' scores depend on the camera, beyond the label?

ALL-IDB1 was photographed with two cameras (told apart by image size): one photographed only ALL
patients, the other both classes. A model that learned the camera would score an ALL image from the
ALL-only camera higher than an ALL image from the mixed camera. The test (documented in the book):
among ALL images only, each image's p(ALL) averaged over the splits in which it was a test image (one
value per image, so images are independent units), compared between the two cameras with a two-sided
Mann-Whitney U test (``scipy.stats.mannwhitneyu``). A difference is not proof of a shortcut (the
cameras also photographed different patients); no difference is evidence against a strong one.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from allrep.data.dataset import manifest
from allrep.evaluate.metrics import predict_label

CAMERA_DATASETS = ("IDB1", "combined")


def cameras() -> pd.Series:
    """Image id -> camera, named by the image size (ALL-IDB2 crops: ``crop``)."""
    return pd.Series({it.id: ("crop" if it.db == "IDB2" else f"{it.width}x{it.height}") for it in manifest("combined")},
                     name="camera")


def camera_table(model_probs: pd.DataFrame) -> pd.DataFrame:
    """Per (dataset, protocol, model, camera), test predictions pooled over the repeats: accuracy,
    sensitivity and specificity as exact k/n ("" where a camera has no image of that class)."""
    d = model_probs[model_probs["dataset"].isin(CAMERA_DATASETS)].copy()
    d["camera"] = d["id"].map(cameras())
    d["yhat"] = predict_label(d["p"])
    rows = []
    for (ds, protocol, model, cam), g in d.groupby(["dataset", "protocol", "model", "camera"], sort=True):
        pos, neg = g[g["label"] == 1], g[g["label"] == 0]
        rows.append(dict(dataset=ds, protocol=protocol, model=model, camera=cam, images=g["id"].nunique(),
                         accuracy=f"{int((g['yhat'] == g['label']).sum())}/{len(g)}",
                         sensitivity=f"{int((pos['yhat'] == 1).sum())}/{len(pos)}" if len(pos) else "",
                         specificity=f"{int((neg['yhat'] == 0).sum())}/{len(neg)}" if len(neg) else ""))
    return pd.DataFrame(rows)


def camera_test(model_probs: pd.DataFrame) -> pd.DataFrame:
    """Per (dataset, protocol, model): ALL images' mean p(ALL) per image, ALL-only camera against the mixed
    camera: images per camera, medians, Mann-Whitney U and its two-sided p-value."""
    d = model_probs[model_probs["dataset"].isin(CAMERA_DATASETS) & (model_probs["label"] == 1)].copy()
    d["camera"] = d["id"].map(cameras())
    d = d[d["camera"] != "crop"]
    both = [c for c, g in model_probs.assign(camera=model_probs["id"].map(cameras())).groupby("camera")
            if c != "crop" and g["label"].nunique() == 2]
    only = [c for c in d["camera"].unique() if c not in both]
    if len(both) != 1 or len(only) != 1:
        return pd.DataFrame()
    rows = []
    for (ds, protocol, model), g in d.groupby(["dataset", "protocol", "model"], sort=True):
        per_image = g.groupby(["id", "camera"])["p"].mean().reset_index()
        a = per_image.loc[per_image["camera"] == only[0], "p"].to_numpy()
        b = per_image.loc[per_image["camera"] == both[0], "p"].to_numpy()
        if not len(a) or not len(b):
            continue
        u = stats.mannwhitneyu(a, b, alternative="two-sided")
        rows.append(dict(dataset=ds, protocol=protocol, model=model, all_only_camera=only[0], mixed_camera=both[0],
                         n_all_only=len(a), n_mixed=len(b), median_p_all_only=float(np.median(a)),
                         median_p_mixed=float(np.median(b)), U=float(u.statistic), p_value=float(u.pvalue)))
    return pd.DataFrame(rows)
