"""Per-stage digests of a run: which stages a re-execution reproduces bit for bit, on this CPU or another.

A run's work goes through stages, each feeding the next; a digest per stage shows where two executions
(serial and on Dask workers, or on two CPUs) first part:

* ``features``: every cached backbone feature map (the arrays, not the files' bytes), per feature cache
  (backbone, weights, input size);
* ``reduction``: every split's channel reduction as its heads recorded it (``reduction_sha256``), per backbone;
* ``heads``: every trained head's best weights (``weights_sha256``), per backbone;
* ``tuning``: the searches' choices (the run's ``tuning/`` files);
* ``probabilities``: the members' and plain heads' test and validation probabilities, and the from-scratch ones;
* ``results``: everything else the run scored (fusion, uncertainty, claims, held-out calls), the files' bytes.

A CSV is digested without its wall-time columns (``train_seconds``: a from-scratch member's), which differ on
every execution.

The cache is read as it is, so a digest describes one run only when its cache held that run alone (the smoke
run's fresh cache, for instance). :func:`compare` names the stages whose digests differ.

A record also names the arithmetic it was made with (:func:`arithmetic`: the feature extraction's and the member
engine's versions, and :data:`RESULTS` for the scoring). A change that alters what a stage computes on purpose bumps
one of them, and a record of other arithmetic is reported, never compared: it describes other code, not another CPU.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from allrep.cache import folder
from allrep.io import atomic_write_text
from allrep.profile import Profile
from allrep.record import places
from allrep.repro import cpu

RESULTS = 2  # the scoring's version: 2, a calibration map "improves" the test NLL only beyond rounding


def arithmetic() -> dict:
    """The versions of the arithmetic a record describes (module doc)."""
    from allrep.train import features, members

    return dict(features=features.ALGO, members=members.ALGO, results=RESULTS)


STAGES = ("features", "reduction", "heads", "tuning", "probabilities", "results")
_NOT_RESULTS = ("timings", "ledger.csv", "digests")  # dates and seconds: never reproducible; the records themselves


def _sha(parts) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p if isinstance(p, bytes) else str(p).encode())
        h.update(b"\n")
    return h.hexdigest()


def _features(root: Path | None) -> dict:
    out = {}
    base = folder("features", root=root)
    for d in sorted(base.iterdir()) if base.is_dir() else []:
        parts = []
        for f in sorted(d.glob("*.npz")):
            with np.load(f) as z:
                a = np.ascontiguousarray(z["features"])
            parts += [f.name, str(a.dtype), str(a.shape), hashlib.sha256(a.tobytes()).hexdigest()]
        out[d.name] = dict(items=len(parts) // 4, sha256=_sha(parts))  # backbone-weights-size[-pool]: one per cache
    return out


def _heads(root: Path | None) -> tuple[dict, dict]:
    reduction, heads = {}, {}
    base = folder("members", root=root)
    for d in sorted(base.iterdir()) if base.is_dir() else []:
        recs = [json.loads(f.read_text()) for f in sorted(d.glob("*.json"))]
        red = sorted({r["reduction_sha256"] for r in recs if "reduction_sha256" in r})
        w = sorted((f.stem, r["weights_sha256"]) for f, r in zip(sorted(d.glob("*.json")), recs) if "weights_sha256" in r)
        reduction[d.name] = dict(items=len(red), sha256=_sha(red))
        heads[d.name] = dict(items=len(w), sha256=_sha(f"{k} {v}" for k, v in w))
    return reduction, heads


def _file_sha(f: Path) -> str:
    """sha256 of a results file; of a CSV without its wall-time columns (named ``*seconds``), which no
    re-execution reproduces."""
    if f.suffix == ".csv":
        import pandas as pd

        df = pd.read_csv(f, dtype=str, keep_default_na=False)
        df = df.drop(columns=[c for c in df.columns if c.endswith("seconds")])
        return hashlib.sha256(df.to_csv(index=False).encode()).hexdigest()
    return hashlib.sha256(f.read_bytes()).hexdigest()


def _files(results: Path, names) -> dict:
    out = {}
    for name in names:
        p = results / name
        files = sorted(f for f in (p.rglob("*") if p.is_dir() else [p]) if f.is_file())
        if files:
            out[name] = dict(items=len(files), sha256=_sha(
                f"{f.relative_to(results).as_posix()} {_file_sha(f)}" for f in files))
    return out


def stage_digests(cfg: Profile, cache_root: Path | None = None) -> dict:
    """The run's digest per stage (module doc): stage -> name -> {items, sha256}, with the CPU it ran on."""
    results = places.output_dir(cfg)
    reduction, heads = _heads(cache_root)
    top = sorted(p.name for p in results.iterdir()) if results.is_dir() else []
    rest = [n for n in top if n not in ("tuning", "probabilities", "scratch", *_NOT_RESULTS)]
    return dict(profile=cfg.name, cpu=cpu(), arithmetic=arithmetic(), stages=dict(
        features=_features(cache_root), reduction=reduction, heads=heads,
        tuning=_files(results, ["tuning"]), probabilities=_files(results, ["probabilities", "scratch"]),
        results=_files(results, rest)))


def stage_sha256(rec: dict, stage: str) -> str:
    """One digest for a whole stage of a record (its names' digests together)."""
    names = rec["stages"].get(stage, {})
    return _sha(f"{n} {names[n]['items']} {names[n]['sha256']}" for n in sorted(names))


def compare(a: dict, b: dict) -> list[str]:
    """The stages (and names within them) whose digests differ between two :func:`stage_digests` records;
    [] when every stage agrees."""
    out = []
    for stage in STAGES:
        x, y = a["stages"].get(stage, {}), b["stages"].get(stage, {})
        for name in sorted(set(x) | set(y)):
            if x.get(name) != y.get(name):
                out.append(f"{stage}/{name}")
    return out


FOLDER = places.DIGESTS


def record_path(cfg: Profile) -> Path:
    """The committed digests of ``cfg``'s run, one record per CPU it was measured on (:data:`FOLDER`)."""
    return FOLDER / f"{cfg.name}.json"


def _machine(rec: dict) -> tuple:
    return rec["cpu"].get("model"), tuple(rec["cpu"].get("flags", []))


def same_machine(a: dict, b: dict) -> bool:
    """Whether two records come from CPUs of one model and instruction set."""
    return _machine(a) == _machine(b)


def same_arithmetic(a: dict, b: dict) -> bool:
    return a.get("arithmetic", {}) == b.get("arithmetic", {})


def comparable(a: dict, b: dict) -> bool:
    """Whether two records should be bitwise equal: one CPU model and instruction set, one arithmetic."""
    return same_machine(a, b) and same_arithmetic(a, b)


def arithmetic_words(rec: dict) -> str:
    """A record's arithmetic in words (the report and the book's digests table)."""
    return ", ".join(f"{k} {v}" for k, v in sorted(rec.get("arithmetic", {}).items())) or \
        "recorded before records named their arithmetic"


def records(cfg: Profile) -> list[dict]:
    p = record_path(cfg)
    return json.loads(p.read_text()) if p.is_file() else []


def report(mine: dict, recorded: list[dict]) -> list[str]:
    """One line per committed record: whether ``mine`` reproduces it, and where not, which stages differ."""
    lines = []
    for rec in recorded:
        bad = compare(mine, rec)
        same = "this CPU" if same_machine(rec, mine) else "another CPU"
        head = f"{rec['cpu'].get('model')} ({same}, {len(rec['cpu'].get('flags', []))} ISA flags): "
        if not same_arithmetic(rec, mine):
            lines.append(head + f"other arithmetic ({arithmetic_words(rec)}), not compared")
        else:
            lines.append(head + ("every stage identical" if not bad else "differs at " + ", ".join(bad)))
    return lines


def add_record(cfg: Profile, mine: dict) -> Path:
    """Keep ``mine`` in the committed file, replacing an earlier record of the same CPU model and flags (whatever
    its arithmetic: the file keeps each CPU's newest record)."""
    kept = [r for r in records(cfg) if not same_machine(r, mine)]
    p = record_path(cfg)
    p.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_text(p, json.dumps([*kept, mine], indent=1, sort_keys=True) + "\n")
