"""Step 10: the split files every later step reads, and the shortcut baselines.

The exploration itself (sizes, colours, duplicates, overlaps, arrows) is library code in
:mod:`allrep.audit` that the notebook calls and shows.
"""
from __future__ import annotations

import pandas as pd

from ..baselines import majority_baseline, size_only_baseline
from ..registry import PROTOCOLS, Context
from ..scores import summarize
from ..splits import make_splits


def splits(ctx: Context) -> dict[tuple[str, str], pd.DataFrame]:
    """Make and write the split file of every (dataset, protocol); returns them."""
    cfg, s = ctx.cfg, ctx.cfg.splits
    out = {}
    for dataset, protocol in ctx.paths("splits", "outputs"):
        df = make_splits(dataset, protocol, cfg.seed, s.test_fraction, s.val_fraction, s.repeats)
        ctx.write_csv(df, "splits", dataset=dataset, protocol=protocol)
        out[dataset, protocol] = df
    return out


def shortcut_baselines(ctx: Context, frames: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Image-size-only and majority-class baselines on every split; writes the per-split table.
    Returns (per split, summary)."""
    per = {d: pd.concat([frames[d, p] for p in PROTOCOLS], ignore_index=True) for d in ctx.cfg.datasets}
    short = pd.concat([size_only_baseline(per[d], d) for d in ctx.cfg.datasets]
                      + [majority_baseline(per[d], d) for d in ctx.cfg.datasets])
    ctx.write_csv(short, "shortcuts")
    return short, summarize(short)


def shortcut_glue(summary: pd.DataFrame) -> dict:
    return {f"short_{r['model'].split()[0]}_{r['dataset']}_{r['protocol']}": float(r["accuracy"])
            for _, r in summary.iterrows()}
