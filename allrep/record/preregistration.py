"""The pre-registration of the registered run (:func:`allrep.record.runs.registered`): its splits and its
verdict rule's operating characteristics, frozen in ``preregistration/`` before any model scored those splits.

``allrep preregister`` writes, for that run's profile:

* ``splits/<dataset>_<protocol>.csv``: the split files step 10 will write (:func:`allrep.data.splits.make_splits`);
* ``operating_characteristics.csv`` and ``design.csv``: the rule's simulated operating characteristics
  and the design table for that grouped design (:func:`allrep.evaluate.claims.verdict_design`), exactly as step 10
  writes them;
* ``profile.json``: the resolved profile (every setting, after ``extends``) and its digest;
* ``SHA256SUMS``: a checksum of each of the files above.

``allrep preregister --check`` recomputes the splits and the profile and compares them with the frozen
files byte for byte (the simulated tables are compared to 1e-6: they are floating-point sums), so the
registered run can show that it ran what was registered. Nothing here reads an image or a model.
"""
from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import pandas as pd

from allrep.data.splits import PROTOCOLS, make_splits
from allrep.errors import AllrepError
from allrep.evaluate.claims import verdict_design
from allrep.io import atomic_write_text
from allrep.profile import PROJECT_ROOT, Profile, load_profile, plain_dict
from allrep.record.runs import registered

FOLDER = PROJECT_ROOT / "preregistration"
PROFILE = registered().profile
TABLES = ("operating_characteristics.csv", "design.csv")


def _csv(df: pd.DataFrame) -> str:
    buf = io.StringIO()
    df.to_csv(buf, index=False, lineterminator="\n")  # as allrep.io.atomic_write_csv writes results files
    return buf.getvalue()


def splits(cfg: Profile) -> dict[str, pd.DataFrame]:
    """Every split file of ``cfg``: ``<dataset>_<protocol>.csv`` -> frame (step 10's files)."""
    s = cfg.splits
    return {f"{ds}_{protocol}.csv": make_splits(ds, protocol, cfg.seed, s.test_fraction, s.val_fraction, s.repeats,
                                                s.folds)
            for ds in cfg.datasets for protocol in PROTOCOLS}


def profile_record(cfg: Profile) -> str:
    return json.dumps(dict(profile=cfg.name, digest=cfg.digest(), settings=plain_dict(cfg)), indent=1, sort_keys=True,
                      default=str) + "\n"


def contents(cfg: Profile, tables: bool = True) -> dict[str, str]:
    """Relative path -> text of every pre-registered file (the simulated tables only with ``tables``)."""
    sp = splits(cfg)
    out = {f"splits/{name}": _csv(df) for name, df in sp.items()}
    if tables:
        grouped = {ds: sp[f"{ds}_grouped.csv"] for ds in cfg.datasets}
        oc, design = verdict_design(grouped, cfg.verdict, cfg.seed)
        out["operating_characteristics.csv"], out["design.csv"] = _csv(oc), _csv(design)
    out["profile.json"] = profile_record(cfg)
    return out


def _sums(files: dict[str, str]) -> str:
    return "".join(f"{hashlib.sha256(t.encode()).hexdigest()}  {p}\n" for p, t in sorted(files.items()))


def _flat(d: dict, prefix: str = "") -> list[tuple[str, object]]:
    out = []
    for k, v in d.items():
        out += _flat(v, f"{prefix}{k}.") if isinstance(v, dict) and v else [(f"{prefix}{k}", v)]
    return out


def _new_keys(today: dict, registered: dict, prefix: str = "") -> list[str]:
    out = []
    for k, v in today.items():
        if k not in registered:
            out.append(prefix + k)
        elif isinstance(v, dict) and isinstance(registered[k], dict):
            out += _new_keys(v, registered[k], f"{prefix}{k}.")
    return out


def additions(profile: str = PROFILE, folder: Path = FOLDER) -> list[str]:
    """Settings the profile has today that the pre-registration did not (a later section, say), each named by
    its shortest new prefix: each is an amendment, and book/preregistration.md must name it
    (tests/test_preregistration.py)."""
    registered = json.loads((folder / "profile.json").read_text())["settings"]
    today = json.loads(profile_record(load_profile(profile)))["settings"]
    return sorted(_new_keys(today, registered))


def write(profile: str = PROFILE, folder: Path = FOLDER) -> list[Path]:
    """Write the pre-registration files (module doc); refuses to overwrite an existing pre-registration."""
    if (folder / "SHA256SUMS").is_file():
        raise AllrepError(f"{folder.name}/ already holds a pre-registration: it is frozen (check it with "
                          f"`allrep preregister --check`; a new one needs a new seed and a new folder)")
    files = contents(load_profile(profile))
    for rel, text in files.items():
        atomic_write_text(folder / rel, text)
    atomic_write_text(folder / "SHA256SUMS", _sums(files))
    return sorted(folder / r for r in [*files, "SHA256SUMS"])


def check(profile: str = PROFILE, folder: Path = FOLDER, tables: bool = True) -> list[str]:
    """What differs between the frozen pre-registration and the profile today (empty: nothing). The frozen
    files must match their SHA256SUMS; the splits must be byte-identical when recomputed; every registered
    setting must keep its value (settings added later are amendments: :func:`additions`); the simulated
    tables equal to 1e-6."""
    if not (folder / "SHA256SUMS").is_file():
        raise AllrepError(f"no pre-registration in {folder}: write one with `allrep preregister`")
    bad = []
    for line in (folder / "SHA256SUMS").read_text().splitlines():
        digest, rel = line.split("  ", 1)
        p = folder / rel
        if not p.is_file() or hashlib.sha256(p.read_bytes()).hexdigest() != digest:
            bad.append(f"{rel}: changed since it was registered (SHA256SUMS)")
    cfg = load_profile(profile)
    now = contents(cfg, tables)
    now.pop("profile.json")
    registered = json.loads((folder / "profile.json").read_text())["settings"]
    today = dict(_flat(json.loads(profile_record(cfg))["settings"]))
    for key, value in _flat(registered):
        if key not in today:
            bad.append(f"profile.json: setting {key} was registered and is gone")
        elif today[key] != value:
            bad.append(f"profile.json: {key} was registered as {value!r}, the {profile} profile has {today[key]!r}")
    for rel, text in now.items():
        frozen = (folder / rel).read_text() if (folder / rel).is_file() else None
        if rel in TABLES and frozen is not None:
            a, b = pd.read_csv(io.StringIO(frozen)), pd.read_csv(io.StringIO(text))
            try:
                pd.testing.assert_frame_equal(a, b, check_exact=False, atol=1e-6, rtol=0)
                continue
            except AssertionError:
                pass
        if frozen != text:
            bad.append(f"{rel}: the {profile} profile no longer produces the registered file")
    return bad


def page_tables(folder: Path = FOLDER) -> dict[str, pd.DataFrame] | None:
    """The pre-registration page's tables, from the frozen files only (None before there are any): the
    registered settings, the design table, and the operating characteristics at the paper's figure, half a
    margin below it, a margin below it and two margins below it."""
    if not (folder / "SHA256SUMS").is_file():
        return None
    rec = json.loads((folder / "profile.json").read_text())
    st = rec["settings"]
    bbs = ", ".join(f"{b} ({st['backbones'][b]['weights']}"
                    + (", random where no offline file" if st["backbones"][b].get("random_if_unavailable") else "")
                    + ")" for b in st["use_backbones"])
    sp = st["splits"]
    rows = [("profile", f"{rec['profile']} (digest {rec['digest']})"), ("split seed", st["seed"]),
            ("grouped protocol", f"{sp['folds']}-fold grouped stratified, repeated {sp['repeats']} times: "
                                 f"{sp['folds'] * sp['repeats']} outer splits, every image tested {sp['repeats']} times"),
            ("paper protocol", f"one stratified hold-out of {sp['test_fraction']:.0%} as test"),
            ("validation part", f"{sp['val_fraction']:.0%} of each training part, grouped"),
            ("backbones (weights)", bbs), ("ensemble members", st["ensemble"]["members"]),
            ("tuning trials per split", st["tuning"]["trials"]),
            ("margin delta", f"{100 * st['verdict']['delta']:.0f} points"),
            ("alpha (each one-sided test)", st["verdict"]["alpha"]), ("ICC (design effect)", st["verdict"]["icc"]),
            ("simulations", st["verdict"]["simulations"]),
            ("calibration folds", st["uncertainty"]["calibration_folds"]),
            ("referral coverage", st["uncertainty"]["referral_coverage"])]
    settings = pd.DataFrame(rows, columns=["setting", "registered value"]).astype(str)
    design = pd.read_csv(folder / "design.csv")
    d = design[["dataset", "outer_splits", "images", "groups", "effective_n",
                "p_reproduced_at_paper", "p_not_reproduced_at_delta_below", "meets", "smallest_delta"]].copy()
    d["smallest_delta"] = [("none up to 10 points" if pd.isna(x) else f"{100 * x:.1f} points") for x in d["smallest_delta"]]
    d.insert(2, "images (groups)", [f"{i} ({g})" for i, g in zip(d.pop("images"), d.pop("groups"))])
    d = d.rename(columns={"outer_splits": "splits", "p_reproduced_at_paper": "P(reproduced) at the paper's figure",
                          "p_not_reproduced_at_delta_below": "P(not reproduced) a margin below",
                          "smallest_delta": "smallest margin met"})
    oc = pd.read_csv(folder / "operating_characteristics.csv")
    delta, picks = float(design["delta"].iloc[0]), []
    for r in design.itertuples():
        g = oc[oc["dataset"] == r.dataset]
        for k, label in ((0, "the paper's figure"), (0.5, "half a margin below"), (1, "a margin below"),
                         (2, "two margins below")):
            target = r.paper_accuracy / 100 - k * delta
            row = g.iloc[(g["true_accuracy"] - target).abs().argmin()]
            picks.append(dict(dataset=r.dataset, true_accuracy=f"{100 * row['true_accuracy']:.1f}% ({label})",
                              p_reproduced=row["p_reproduced"], p_inconclusive=row["p_inconclusive"],
                              p_not_reproduced=row["p_not_reproduced"]))
    return {"preregistration_settings.md": settings, "preregistration_design.md": d,
            "preregistration_oc.md": pd.DataFrame(picks)}
