"""Scores of every member, backbone ensemble and fusion rule, per split, from per-member
test probabilities (results files; no images, no training). Computes and returns; writes nothing.
"""
from __future__ import annotations

import pandas as pd

from allrep.evaluate.fusion import fuse
from allrep.evaluate.metrics import binary_metrics, clopper_pearson, predict_label, summarize_repeats

KEYS = ["protocol", "repeat", "dataset"]
PROB_COLUMNS = ["protocol", "repeat", "dataset", "backbone", "member", "id", "label", "p_all"]


def member_frame(part: pd.DataFrame, p, protocol: str, repeat: int, dataset: str, backbone: str,
                 member: int) -> pd.DataFrame:
    """One member's p(ALL) on a split part's images, in the committed column order (6 decimals)."""
    import numpy as np

    return pd.DataFrame(dict(protocol=protocol, repeat=repeat, dataset=dataset, backbone=backbone, member=member,
                             id=part["id"].to_numpy(), label=part["label"].to_numpy(),
                             p_all=np.round(p, 6)))[PROB_COLUMNS]


def random_weight_backbones(meta: dict) -> list[str]:
    """Backbones whose ensembles started from random weights, from the ensembles' metadata records."""
    return sorted({m["backbone"] for m in meta.values() if m["weights"]["kind"] == "random"})


def ensemble_means(probs: pd.DataFrame) -> pd.DataFrame:
    """Mean p(ALL) over members: one row per (protocol, repeat, dataset, backbone, image)."""
    return (probs.groupby(KEYS + ["backbone", "id", "label"], sort=True)["p_all"].mean().reset_index())


def ensembles(probs: pd.DataFrame) -> dict:
    """(dataset, protocol, repeat, backbone) -> images x members table of p(ALL)."""
    return {k: g.pivot(index=["id", "label"], columns="member", values="p_all")
            for k, g in probs.groupby(["dataset", "protocol", "repeat", "backbone"], sort=True)}


def ensemble_accuracy(probs: pd.DataFrame) -> pd.DataFrame:
    """Correct / n of each ensemble mean, per protocol and repeat."""
    m = ensemble_means(probs)
    m = m.assign(correct=(m["p_all"] > 0.5) == (m["label"] == 1))
    return m.groupby(["protocol", "repeat"])["correct"].agg(correct="sum", n="count").reset_index()


PLAIN_FUSION = "sum fusion, plain heads"


def score_table(probs: pd.DataFrame, rules, random_bb, plain: pd.DataFrame | None = None) -> pd.DataFrame:
    """Accuracy etc. of every single member, backbone ensemble and fusion rule (``rules``), per split;
    fusion also without the ``random_bb`` backbones (random initialisation) when two others remain.
    With ``plain`` (the plain reference heads' test probabilities), each plain head and their sum rule
    follow, on the same splits."""
    means = ensemble_means(probs)
    rows = []
    random_bb = list(random_bb)
    for key, part in probs.groupby(KEYS + ["backbone", "member"], sort=True):
        rows.append(dict(zip(KEYS, key[:3]), model=f"{key[3]} member {key[4]}", kind="member",
                         **binary_metrics(part["label"], part["p_all"])))
    for key, part in means.groupby(KEYS, sort=True):
        wide = part.pivot(index=["id", "label"], columns="backbone", values="p_all")
        y = wide.index.get_level_values("label").to_numpy()
        for bb in wide.columns:
            rows.append(dict(zip(KEYS, key), model=f"{bb} ensemble", kind="backbone", **binary_metrics(y, wide[bb])))
        sets = {"all backbones": list(wide.columns)}
        pretrained = [b for b in wide.columns if b not in random_bb]
        if random_bb and len(pretrained) >= 2 and len(pretrained) < len(wide.columns):
            sets[f"without {', '.join(random_bb)} (random init)"] = pretrained
        for set_name, cols in sets.items():
            for rule in rules:
                p = fuse(wide[cols].to_numpy().T, rule)
                rows.append(dict(zip(KEYS, key), model=f"{rule} fusion, {set_name}", kind="fusion",
                                 **binary_metrics(y, p)))
    if plain is not None and len(plain):
        for key, part in ensemble_means(plain).groupby(KEYS, sort=True):  # a plain reference's members averaged
            wide = part.pivot(index=["id", "label"], columns="backbone", values="p_all")
            y = wide.index.get_level_values("label").to_numpy()
            for bb in wide.columns:
                rows.append(dict(zip(KEYS, key), model=f"{bb} plain head", kind="plain", **binary_metrics(y, wide[bb])))
            rows.append(dict(zip(KEYS, key), model=PLAIN_FUSION, kind="plain fusion",
                             **binary_metrics(y, fuse(wide.to_numpy().T, "sum"))))
    return pd.DataFrame(rows)


def tuned_vs_plain(summary: pd.DataFrame) -> pd.DataFrame:
    """Per dataset, protocol and backbone (and for the sum rule): the tuned ensemble against the
    plain head on the same splits, pooled k/n and mean over repeats, and whether tuning won."""
    rows = []
    for (ds, protocol), part in summary.groupby(["dataset", "protocol"], sort=True):
        s = part.set_index("model")
        pairs = [(m[: -len(" plain head")], f"{m[: -len(' plain head')]} ensemble", m)
                 for m in s.index if m.endswith(" plain head")]
        pairs.append(("sum rule, all backbones", "sum fusion, all backbones", PLAIN_FUSION))
        for name, tuned, plain in pairs:
            if tuned not in s.index or plain not in s.index:
                continue
            t, p = s.loc[tuned], s.loc[plain]
            better = "yes" if t["k"] > p["k"] else ("tie" if t["k"] == p["k"] else "no")
            rows.append(dict(dataset=ds, protocol=protocol, model=name, tuned_k=int(t["k"]), plain_k=int(p["k"]),
                             n=int(t["n"]), tuned_mean=t["mean"], plain_mean=p["mean"], tuned_beats_plain=better))
    return pd.DataFrame(rows)


def scratch_fusion_table(dataset: str, probs: pd.DataFrame, scratch: pd.DataFrame, random_bb) -> pd.DataFrame:
    """On the splits that have from-scratch members: each from-scratch recipe alone, the run's
    random-feature backbone alone, and the sum rule over the pretrained backbones without it,
    with it (as the run fused it) and with each from-scratch recipe in its place. Paired: the
    same test images in every row of a split."""
    probs = probs[probs["dataset"] == dataset]
    scratch = scratch[scratch["dataset"] == dataset] if len(scratch) else scratch
    if not len(scratch):
        return pd.DataFrame()
    means = ensemble_means(probs)
    random_bb = set(random_bb)
    rows = []
    for (protocol, r), sc in scratch.groupby(["protocol", "repeat"], sort=True):
        part = means[(means["protocol"] == protocol) & (means["repeat"] == r)]
        wide = part.pivot(index=["id", "label"], columns="backbone", values="p_all")
        sc_wide = sc.groupby(["id", "label", "recipe"])["p_all"].mean().unstack("recipe")
        wide = wide.join(sc_wide, how="inner")
        assert len(wide) == len(sc_wide) == len(part) / part["backbone"].nunique(), "scratch split != ensemble split"
        y = wide.index.get_level_values("label").to_numpy()
        key = dict(protocol=protocol, repeat=int(r), dataset=dataset)
        bbs = [b for b in part["backbone"].unique()]
        pretrained = sorted(b for b in bbs if b not in random_bb)
        rnd = sorted(b for b in bbs if b in random_bb)
        constant = {c for c in wide.columns if len(set(predict_label(wide[c]))) == 1}
        for name in sc_wide.columns:
            rows.append(dict(key, model=f"from scratch ({name}) alone", recipe=name, **binary_metrics(y, wide[name]),
                             note="constant prediction" if name in constant else ""))
        for b in rnd:
            rows.append(dict(key, model=f"{b} frozen random features alone", **binary_metrics(y, wide[b]),
                             note="constant prediction" if b in constant else ""))
        sets = {f"sum fusion, {' + '.join(pretrained)}": pretrained}
        for b in rnd:
            sets[f"sum fusion, + {b} frozen random features"] = pretrained + [b]
        for name in sc_wide.columns:
            sets[f"sum fusion, + from scratch ({name})"] = pretrained + [name]
        for label, cols in sets.items():
            const = [c for c in cols if c in constant]
            rows.append(dict(key, model=label, **binary_metrics(y, fuse(wide[cols].to_numpy().T, "sum")),
                             note=f"fuses a constant predictor: {', '.join(const)}" if const else ""))
    return pd.DataFrame(rows)


def notes_by_model(table: pd.DataFrame) -> pd.Series:
    """Per (dataset, protocol, model): the notes of its splits, with how many splits carry each."""
    def join(notes):
        counts = notes[notes != ""].value_counts()
        return "; ".join(f"{n} ({c}/{len(notes)} splits)" for n, c in counts.items())

    return table.fillna({"note": ""}).groupby(["dataset", "protocol", "model"], sort=True)["note"].agg(join)


def scratch_glue(table: pd.DataFrame) -> dict:
    """k and n of each from-scratch recipe alone on each dataset's paper split, keyed for myst-nb glue
    (``scratch_<recipe>_<dataset>_paper_k`` / ``_n``)."""
    alone = table[(table["protocol"] == "paper") & table["recipe"].notna()]
    out = {}
    for _, r in alone.iterrows():
        key = f"scratch_{r['recipe']}_{r['dataset']}_paper"
        out[f"{key}_k"], out[f"{key}_n"] = int(r["n_correct"]), int(r["n"])
    return out


def summarize(scores: pd.DataFrame) -> pd.DataFrame:
    """Per (dataset, protocol, model): pooled k/n, mean, sd, lowest and highest split accuracy, and
    an interval: the t interval of the mean over repeats, or for one split its exact (Clopper-Pearson) one."""
    rows = []
    for (ds, protocol, model), part in scores.groupby(["dataset", "protocol", "model"], sort=True):
        k, n = int(part["n_correct"].sum()), int(part["n"].sum())
        rep = summarize_repeats(part["accuracy"])
        if len(part) == 1:  # one split: its exact interval (a t interval needs repeats)
            rep["ci_low"], rep["ci_high"] = clopper_pearson(k, n)
        rows.append(dict(dataset=ds, protocol=protocol, model=model, repeats=len(part), k=k, n=n, accuracy=k / n,
                         mean=rep["mean"], sd=rep["sd"], ci_low=rep["ci_low"], ci_high=rep["ci_high"],
                         min=float(part["accuracy"].min()), max=float(part["accuracy"].max()),
                         auc=float(part["auc"].mean())))
    return pd.DataFrame(rows)


