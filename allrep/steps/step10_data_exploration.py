"""Step 10: the split files every later step reads, and the shortcut baselines.

The exploration itself (sizes, colours, duplicates, overlaps, arrows) is library code in
:mod:`allrep.data.audit` that the notebook calls and shows.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from allrep.data.splits import PROTOCOLS, make_splits
from allrep.evaluate.baselines import majority_baseline, size_only_baseline
from allrep.evaluate.claims import verdict_design as verdict_design_frames
from allrep.evaluate.scores import summarize

if TYPE_CHECKING:  # the runner passes it in; steps sit below the runner
    from allrep.runner.context import Context


def splits(ctx: Context) -> dict[tuple[str, str], pd.DataFrame]:
    """Make and write the split file of every (dataset, protocol); returns them."""
    cfg, s = ctx.cfg, ctx.cfg.splits
    out = {}
    for dataset, protocol in ctx.paths("splits", "outputs"):
        df = make_splits(dataset, protocol, cfg.seed, s.test_fraction, s.val_fraction, s.repeats, s.folds)
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


def verdict_design(ctx: Context, frames: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The verdict rule's operating characteristics on this profile's grouped design (simulated,
    :func:`allrep.evaluate.claims.operating_characteristics`) and the design table (effective n, power at the
    margin, smallest margin with both powers at 0.8). Written before any model is trained: they depend on
    the splits and the rule only. Returns (operating characteristics, design)."""
    oc, design = verdict_design_frames({ds: frames[ds, "grouped"] for ds in ctx.cfg.datasets}, ctx.cfg.verdict,
                                       ctx.cfg.seed)
    ctx.write_csv(oc, "operating_characteristics")
    ctx.write_csv(design, "design")
    return oc, design


def design_glue(design: pd.DataFrame) -> dict:
    out = {}
    for r in design.itertuples():
        out.update({f"oc_rep_{r.dataset}": round(float(r.p_reproduced_at_paper), 3),
                    f"oc_not_{r.dataset}": round(float(r.p_not_reproduced_at_delta_below), 3),
                    f"oc_neff_{r.dataset}": round(float(r.effective_n), 1),
                    f"oc_splits_{r.dataset}": int(r.outer_splits), f"oc_images_{r.dataset}": int(r.images),
                    f"oc_groups_{r.dataset}": int(r.groups),
                    f"oc_smallest_{r.dataset}": "none up to 10 points" if pd.isna(r.smallest_delta) else f"{100 * r.smallest_delta:.1f} points",
                    f"paper_k_{r.dataset}": int(r.paper_k), f"paper_n_{r.dataset}": int(r.paper_n),
                    f"paper_ci_{r.dataset}": f"{100 * r.paper_ci_low:.1f}% to {100 * r.paper_ci_high:.2f}%"})
    out["verdict_delta"] = f"{100 * float(design['delta'].iloc[0]):.0f} points"
    out["verdict_alpha"] = float(design["alpha"].iloc[0])
    out["verdict_icc"] = float(design["icc"].iloc[0])
    return out
