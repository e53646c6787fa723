"""Leakage and shortcut audits of ALL-IDB (what a model could learn besides cells)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from allrep.data.dataset import load_image, manifest
from allrep.data.provenance import provenance

ARROW_MIN_PIXELS = 100  # yellow pixels at 1024x1024; arrow slides measure ~1,400, others 0


def yellow_pixels(item, root=None, size: int = 1024) -> int:
    """Pixels of a drawn yellow annotation: (R+G)/2 - B > 60 with R, G > 150 (smear stains never are)."""
    a = load_image(item, size, root).astype(np.int16)
    r, g, b = a[..., 0], a[..., 1], a[..., 2]
    return int((((r + g) / 2 - b > 60) & (r > 150) & (g > 150)).sum())


def arrow_table(root=None) -> pd.DataFrame:
    rows = [dict(id=it.id, label=it.label, yellow_pixels=yellow_pixels(it, root)) for it in manifest("IDB1")]
    df = pd.DataFrame(rows)
    df["arrow"] = df["yellow_pixels"] >= ARROW_MIN_PIXELS
    return df


def colour_table(items, root=None, size: int = 64) -> pd.DataFrame:
    """Mean R, G, B of each image at ``size`` x ``size``, long format, for per-class plots."""
    rows = []
    for it in items:
        mean = load_image(it, size, root).reshape(-1, 3).mean(0)
        rows.append(dict(db=it.db, label="ALL" if it.label else "healthy", R=mean[0], G=mean[1], B=mean[2]))
    return pd.DataFrame(rows).melt(id_vars=["db", "label"], var_name="channel", value_name="mean")


def size_table(dataset: str = "combined") -> pd.DataFrame:
    """Counts per (db, size, label): the camera, and hence the label, is readable from the size."""
    df = pd.DataFrame([dict(db=it.db, size=f"{it.width}x{it.height}", label=it.label) for it in manifest(dataset)])
    return df.groupby(["db", "size", "label"]).size().rename("images").reset_index()


def duplicates() -> pd.DataFrame:
    df = pd.DataFrame([dict(id=it.id, sha256=it.sha256) for it in manifest("combined")])
    d = df[df.duplicated("sha256", keep=False)].sort_values(["sha256", "id"])
    return d.groupby("sha256")["id"].apply(lambda s: " = ".join(s)).reset_index(drop=True).to_frame("byte-identical files")


def crops_per_parent() -> pd.DataFrame:
    p = pd.DataFrame(provenance())
    p = p[p["parent"] != ""]
    return p.groupby("parent").size().rename("crops").reset_index()


def overlap_table() -> pd.DataFrame:
    from allrep.data.provenance import OVERLAPS

    return pd.read_csv(OVERLAPS)


def leakage_table(split_frames: dict) -> pd.DataFrame:
    """Per (dataset, protocol): fraction of test images whose group has a training/validation image."""
    from allrep.data.splits import leakage

    rows = []
    for (ds, protocol), sp in split_frames.items():
        for r, part in sp.groupby("repeat"):
            rows.append(dict(dataset=ds, protocol=protocol, repeat=int(r), **leakage(part)))
    df = pd.DataFrame(rows)
    return df.groupby(["dataset", "protocol"]).agg(n_test=("n_test", "mean"), leaked=("n_test_group_in_train", "mean"),
                                                   fraction=("fraction", "mean")).reset_index()
