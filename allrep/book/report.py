"""Honest reporting of the registered run, computed from its committed files for the book: its pre-registered
targets and their outcomes, the verdict rule's properties on its design (which counts give which verdict, so where
a claim has no inconclusive zone; how the verdicts move with the intra-group correlation), and what the registered
run shares with the development run. Reporting only: the registered verdicts stay as they are.
"""
from __future__ import annotations

import re
import subprocess

import numpy as np
import pandas as pd

from allrep.book.tables import DATASET_NAMES
from allrep.evaluate.claims import effective_n, verdicts
from allrep.profile import PROJECT_ROOT, Profile
from allrep.record import places
from allrep.record.history import git
from allrep.record.ledger import counts, of_seed, read
from allrep.runner.pipeline import recorded_runs

ICCS = (0.0, 0.1, 0.2, 0.3)


def _claims(cfg: Profile) -> pd.DataFrame:
    cl = pd.read_csv(places.output_dir(cfg) / "claims.csv")
    return cl[cl["model_set"] == "all backbones"].reset_index(drop=True)


def _test_rows(cfg: Profile, dataset: str, protocol: str) -> pd.DataFrame:
    s = pd.read_csv(places.output_dir(cfg) / "splits" / f"{dataset}_{protocol}.csv")
    return s[s["role"] == "test"]


def _span(ks) -> str:
    ks = list(ks)
    return "none" if not ks else (f"{ks[0]}" if len(ks) == 1 else f"{ks[0]} to {ks[-1]}")


def verdict_zones(cfg: Profile) -> pd.DataFrame:
    """Per claim and protocol (three-backbone fusion): which pooled counts k of n give each verdict at the run's
    effective n, the observed k, and, from the run's simulated operating characteristics (grouped protocol), the
    chance of each verdict if the true accuracy were one point below the paper's figure."""
    rule = cfg.verdict
    oc_path = places.output_dir(cfg) / "verdict" / "operating_characteristics.csv"
    oc = pd.read_csv(oc_path) if oc_path.is_file() else pd.DataFrame()
    rows = []
    for _, r in _claims(cfg).iterrows():
        n, k = int(r["n_test"]), int(r["n_correct"])
        every = verdicts(np.arange(n + 1), n, float(r["effective_n"]), float(r["paper_accuracy"]), rule.delta,
                         rule.alpha)
        zone = {v: np.flatnonzero(every == v) for v in ("not reproduced", "inconclusive", "reproduced")}
        row = {"claim": f"{DATASET_NAMES[r['dataset']]} ({r['paper_accuracy']:g}%)", "protocol": r["protocol"],
               "observed": f"{k}/{n}, {r['verdict']}",
               "not reproduced at k": _span(zone["not reproduced"]), "inconclusive at k": _span(zone["inconclusive"]),
               "reproduced at k": _span(zone["reproduced"])}
        g = oc[oc["dataset"] == r["dataset"]] if len(oc) else oc
        if r["protocol"] == "grouped" and len(g):
            near = g.iloc[(g["true_accuracy"] - (r["paper_accuracy"] / 100 - 0.01)).abs().argmin()]
            row["if true accuracy is 1 point lower: P(not reproduced)"] = f"{near['p_not_reproduced']:.2f}"
        rows.append(row)
    return pd.DataFrame(rows).fillna("")


def icc_sensitivity(cfg: Profile, iccs=ICCS) -> pd.DataFrame:
    """Per claim (grouped protocol, three-backbone fusion): the observed count's verdict and effective n had the
    registration assumed another intra-group correlation of correctness (the registered one is marked)."""
    rule = cfg.verdict
    rows = []
    for _, r in _claims(cfg).iterrows():
        if r["protocol"] != "grouped":
            continue
        tests = _test_rows(cfg, r["dataset"], "grouped")
        row = {"claim": f"{DATASET_NAMES[r['dataset']]} ({r['paper_accuracy']:g}%)",
               "observed": f"{int(r['n_correct'])}/{int(r['n_test'])}"}
        for icc in iccs:
            n_eff = effective_n(tests, icc)
            v = verdicts(np.array([int(r["n_correct"])]), int(r["n_test"]), n_eff, float(r["paper_accuracy"]),
                         rule.delta, rule.alpha)[0]
            mark = " (registered)" if np.isclose(icc, rule.icc) else ""
            row[f"ICC {icc:g}{mark}"] = f"{v} (n eff {n_eff:.0f})"
        rows.append(row)
    return pd.DataFrame(rows)


def targets(cfg: Profile) -> pd.DataFrame:
    """The registered targets (``book/preregistration.md``) against what the run did."""
    cl = _claims(cfg)
    rows = []
    g = cl[(cl["dataset"] == "IDB2") & (cl["protocol"] == "grouped")]
    if len(g):
        r = g.iloc[0]
        rows.append(dict(target="grouped ALL-IDB2, three-backbone fusion, at least 98% correct",
                         outcome=f"{int(r['n_correct'])}/{int(r['n_test'])} = {r['accuracy']:.2%}",
                         met="yes" if r["accuracy"] >= 0.98 else "no"))
    sc_path = places.output_dir(cfg) / "fusion" / "scores.csv"
    if sc_path.is_file():
        sc = pd.read_csv(sc_path)
        s = sc[(sc["dataset"] == "IDB2") & (sc["protocol"] == "grouped")].set_index(["repeat", "model"])["n_correct"]
        reps = sorted({rp for rp, _ in s.index})
        pairs = [(s.get((rp, "mobilenetv2 ensemble")), s.get((rp, "mobilenetv2 plain head"))) for rp in reps]
        pairs = [(a, b) for a, b in pairs if a is not None and b is not None]
        if pairs:
            ok = sum(a >= b for a, b in pairs)
            rows.append(dict(target="grouped ALL-IDB2, the MobileNetV2 ensemble at least its plain reference, split "
                                    "by split",
                             outcome=f"on {ok} of {len(pairs)} outer splits ({sum(a for a, _ in pairs)} against "
                                     f"{sum(b for _, b in pairs)} correct in all)",
                             met="yes" if ok == len(pairs) else "no"))
    empty = [r for r in recorded_runs(cfg)  # runs that computed everything, to the end
             if not any((r.get("cache_at_start") or {}).values()) and not r.get("interrupted")]
    if empty:
        r = empty[-1]
        total = r["total_seconds"] / 60
        rows.append(dict(target="the run from an empty cache within 90 minutes on two CPU cores",
                         outcome=f"{total:.1f} minutes ({r.get('machine', '').split(',')[0]}, {r['started']})",
                         met="yes" if total <= 90 else "no"))
    return pd.DataFrame(rows)


def shared_with_development(cfg: Profile, development: Profile) -> dict:
    """How independent the registered run is of the development run: the images the development run tested
    (any outer split's test part) and the most looks one development test part got per model before the registered
    run was scored (its first ledger row): later re-executions of the development run chose nothing it uses."""
    dev = pd.concat([pd.read_csv(p) for p in sorted((places.output_dir(development) / "splits").glob("*.csv"))])
    tested = set(dev.loc[dev["role"] == "test", "id"])
    reg = pd.concat([pd.read_csv(p) for p in sorted((places.output_dir(cfg) / "splits").glob("*.csv"))])
    images = set(reg["id"])
    lg = read(places.ledger_path(development))
    dev_rows = lg[of_seed(lg, development.seed)]
    registered = pd.to_datetime(lg.loc[of_seed(lg, cfg.seed), "date"], utc=True)
    if len(registered):
        dev_rows = dev_rows[pd.to_datetime(dev_rows["date"], utc=True) < registered.min()]
    most = int(counts(dev_rows)["max_looks_per_split_and_model"].max()) if len(dev_rows) else 0
    return dict(images=len(images), tested_in_development=len(images & tested), most_development_looks=most)


def amendment_code_changes(root=PROJECT_ROOT) -> pd.DataFrame:
    """The amendment commits (subject "Amendment <n>: ...", nothing else that merely starts with the word) and the code each changed besides settings: the
    allrep modules, notebooks and scripts in its diff (from git; empty without the history)."""
    try:
        log = git("log", "--reverse", "--format=%h%x09%s", "--extended-regexp", "--grep=^Amendment [0-9]+:",
                  root=root)
    except (OSError, subprocess.CalledProcessError):
        return pd.DataFrame(columns=["commit", "amendment", "code changed"])
    rows = []
    for line in filter(None, log.splitlines()):
        commit, subject = line.split("\t", 1)
        if not re.match(r"Amendment \d+:", subject):  # --grep also matches a line of the body
            continue
        files = git("show", "--name-only", "--format=", commit, root=root).split()
        code = sorted(f for f in files if f.startswith(("allrep/", "notebooks/", "scripts/")) and
                      not f.startswith("allrep/resources/"))
        rows.append({"commit": commit, "amendment": subject.split(":", 1)[0],
                     "code changed": ", ".join(f"`{f}`" for f in code) or "none"})
    return pd.DataFrame(rows)


def reexecution_drift(development: Profile, cfg: Profile, root=PROJECT_ROOT) -> pd.DataFrame:
    """The registered verdicts' margins (images) beside how far the last re-execution of the development run moved
    its fused counts (the two latest committed versions of its claims file, from git), per claim and protocol."""
    rel = places.relative(places.output_dir(development) / "claims.csv")
    try:
        commits = git("log", "--format=%h", "-n", "2", "--", rel, root=root).split()
    except (OSError, subprocess.CalledProcessError):
        commits = []
    moved = {}
    if len(commits) == 2:
        import io

        new, old = (pd.read_csv(io.StringIO(git("show", f"{c}:{rel}", root=root))) for c in commits)
        key = ["dataset", "protocol", "model_set"]
        both = new.merge(old, on=key, suffixes=("", "_before"))
        moved = {tuple(r[k] for k in key): (int(r["n_correct_before"]), int(r["n_correct"]), int(r["n_test"]))
                 for _, r in both.iterrows()}
    rows = []
    for _, r in _claims(cfg).iterrows():
        m = moved.get((r["dataset"], r["protocol"], "all backbones"))
        rows.append({"claim": f"{DATASET_NAMES[r['dataset']]} ({r['paper_accuracy']:g}%)", "protocol": r["protocol"],
                     "registered verdict": r["verdict"],
                     "margin (images)": "" if pd.isna(r["margin"]) else int(r["margin"]),
                     "development fused count, re-executed": "" if m is None else
                     f"{m[0]}/{m[2]} -> {m[1]}/{m[2]} ({m[1] - m[0]:+d})"})
    return pd.DataFrame(rows)
