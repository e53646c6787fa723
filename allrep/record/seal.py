"""The seal of a finished run: a checksummed record that the runner never overwrites.

A registered run (``book/preregistration.md``) is scored once; afterwards it is a
record, not a cache. ``allrep seal PROFILE`` writes ``seal.json`` into the run's results folder, once:

* ``commit``: the commit that produced the run, taken from the evidence (the executed notebooks'
  provenance and the run's ledger rows, which must agree), and whether its tree was clean;
* ``environment``: what the run recorded (Python, Keras and its backend, the pinned packages) and the
  pinned files at that commit (``requirements.txt``, ``environment.yml``, ``allrep/resources/*``, by
  sha256); the CPU model and instruction set of the machine that sealed it (a run before the seal recorded
  none of its own);
* ``weights``: the sha256 of each ImageNet file the run's backbones used (from its results);
* ``preregistration``: the digest of ``preregistration/SHA256SUMS``;
* ``stamps``: every variant's stamp as the runner stored it;
* ``files``: the sha256 of every file in the run's results folder, and of each executed notebook's
  normalised code-cell outputs (:func:`notebook_digest`: a re-presented title or parameters cell is not a
  change of the record);
* ``ledger``: the digest of the run's rows in the test-set ledger.

:func:`check` recomputes the record from the files (the environment and the pinned files excepted: they are
the run's, not today's); :func:`status` says "sealed at <commit> (verified)" or
what no longer matches. The runner (:func:`allrep.runner.pipeline.run`) and a notebook's set-up cell refuse a
sealed run; :mod:`allrep.record.replay` re-runs its commit in a worktree instead. Nothing here depends on the
code of today: a sealed run stays verified while the package around it changes.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from allrep.errors import AllrepError
from allrep.profile import PROJECT_ROOT, Profile
from allrep.record import ledger, places
from allrep.record.history import git
from allrep.repro import cpu

FILE = "seal.json"
PINNED = ("requirements.txt", "environment.yml")
RESOURCES = "allrep/resources"
SKIPPED_CELL_TAGS = {"parameters", "injected-parameters"}  # presentation: the runner re-presents them
# what the ledger digest covers: the columns every ledger has had since the run (a later column is not a change)
LEDGER_COLUMNS = ("dataset", "protocol", "split_seed", "split_set", "repeat", "models", "commit", "k", "n", "look",
                  "digest")


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_digest(path: Path) -> str:
    """sha256 of a file's bytes (how the seal records a results file)."""
    return _sha(Path(path).read_bytes())


# ----------------------------------------------------------------------------- what the record covers
def _normalised_output(out: dict) -> dict:
    """One cell output without what a re-render changes (execution counts, metadata, line splitting)."""
    keep = {"output_type": out.get("output_type")}
    for key in ("name", "ename", "evalue"):
        if key in out:
            keep[key] = out[key]
    if "text" in out:
        keep["text"] = "".join(out["text"]) if isinstance(out["text"], list) else out["text"]
    if "traceback" in out:
        keep["traceback"] = list(out["traceback"])
    if "data" in out:
        data = {}
        for mime, value in out["data"].items():
            text = "".join(value) if isinstance(value, list) else value
            if not isinstance(text, str):
                text = json.dumps(text, sort_keys=True)
            data[mime] = "".join(text.split()) if mime.startswith("image/") else text  # base64 wraps differently
        keep["data"] = data
    return keep


def notebook_digest(path: Path) -> str:
    """sha256 of an executed notebook's code-cell outputs, normalised (:func:`_normalised_output`), in cell order;
    the parameters cells and every markdown cell (titles) are presentation and do not count, and neither does the
    standard-error stream (the backend's start-up log, with its time stamps and process ids)."""
    nb = json.loads(Path(path).read_text())
    cells = []
    for cell in nb.get("cells", []):
        if cell.get("cell_type") != "code" or SKIPPED_CELL_TAGS & set(cell.get("metadata", {}).get("tags", [])):
            continue
        cells.append([_normalised_output(o) for o in cell.get("outputs", [])
                      if not (o.get("output_type") == "stream" and o.get("name") == "stderr")])
    return _sha(json.dumps(cells, sort_keys=True).encode())


def _run_files(cfg: Profile) -> dict[str, str]:
    """sha256 of every file of the run, keyed by its path relative to the project: the results folder's files
    (the shared ledger and the seal itself excepted) and each executed notebook's normalised outputs."""
    results = places.output_dir(cfg)
    ledger_file = places.ledger_path(cfg).resolve()
    out = {}
    nested = [places.output_dir(c) for c in _nested_runs(cfg)]
    for p in sorted(results.rglob("*")):
        if not p.is_file() or p.name == FILE or p.resolve() == ledger_file or any(p.is_relative_to(n) for n in nested) \
                or _not_a_record(p):
            continue
        out[places.relative(p)] = file_digest(p)
    for p in _executed(cfg):
        out[places.relative(p) + "#outputs"] = notebook_digest(p)
    return out


NOT_RECORDS = (".partial.ipynb", ".access.log", ".npz", ".npy", ".h5", ".keras")  # git-ignored work files


def _not_a_record(p: Path) -> bool:
    """A file the project never commits (a hidden temporary file, a partial notebook, arrays, models)."""
    return p.name.startswith(".") or p.name.endswith(NOT_RECORDS)


def _executed(cfg: Profile) -> list[Path]:
    """The run's executed notebooks (a partial notebook of an interrupted execution is none)."""
    return [p for p in sorted(places.executed_dir(cfg).glob("*.ipynb")) if not _not_a_record(p)]


def _nested_runs(cfg: Profile) -> list:
    """Other runs whose results folders lie inside this one's (the development run's ``results/`` holds the
    registered run's folder)."""
    from allrep.profile import load_profile
    from allrep.record.runs import committed

    mine = places.output_dir(cfg).resolve()
    out = []
    for run in committed():
        if run.profile != cfg.name:
            other = places.output_dir(load_profile(run.profile)).resolve()
            if other != mine and other.is_relative_to(mine):
                out.append(load_profile(run.profile))
    return out


def _stamps(cfg: Profile) -> dict[str, dict]:
    return {p.name[: -len(".stamp.json")]: json.loads(p.read_text())
            for p in sorted(places.executed_dir(cfg).glob("*.stamp.json"))}


def ledger_rows(cfg: Profile) -> pd.DataFrame:
    """The run's rows in the test-set ledger as it was sealed: its split seed, replays, rows recorded after the
    fact (``added = "backfill"``, :func:`allrep.record.ledger.amendments`) and later exploratory scorings of its
    predictions (``added = "exploratory"``, :mod:`allrep.record.robustness`) excepted."""
    df = ledger.read(places.ledger_path(cfg))
    later = df["added"].isin(["backfill", "exploratory"]) if "added" in df.columns else False
    return df[ledger.of_seed(df, cfg.seed) & (df["look"] != "replay") & ~later].reset_index(drop=True)


def _ledger_digest(rows: pd.DataFrame) -> str:
    buf = io.StringIO()
    rows[list(LEDGER_COLUMNS)].to_csv(buf, index=False, lineterminator="\n")
    return _sha(buf.getvalue().encode())


def _weights(cfg: Profile) -> dict[str, str]:
    """Each backbone's weights, as the run's results record them: ``kind`` and, for a file, its sha256."""
    out = {}
    for p in sorted((places.output_dir(cfg) / "probabilities").glob("*.json")):
        w = json.loads(p.read_text()).get("weights") or {}
        if w.get("backbone"):
            out[w["backbone"]] = w.get("sha256") or w.get("kind", "unknown")
    return out


def _evidence_commit(cfg: Profile, rows: pd.DataFrame) -> tuple[str, bool, dict]:
    """The commit that produced the run: the executed notebooks' provenance and the run's ledger rows name one
    commit (a ledger row ends in ``+dirty`` when code differed from it). Full hash, clean flag, the evidence."""
    from_notebooks = set()
    for p in _executed(cfg):
        meta = json.loads(p.read_text()).get("metadata", {}).get("allrep", {})
        from_notebooks.add(meta.get("environment", {}).get("commit", "unknown"))
    from_ledger = set(rows["commit"].astype(str))
    named = {c.removesuffix("+dirty") for c in from_notebooks | from_ledger}
    if not from_notebooks or "unknown" in named:
        raise AllrepError(f"run {cfg.name}: an executed notebook or ledger row names no commit; nothing to seal")
    full = set()
    for c in named:
        try:
            full.add(git("rev-parse", "--verify", f"{c}^{{commit}}").strip())
        except subprocess.CalledProcessError:
            raise AllrepError(f"run {cfg.name}: its evidence names commit {c}, which this repository lacks") from None
    if len(full) != 1:
        raise AllrepError(f"run {cfg.name}: its executed notebooks and ledger rows name several commits "
                          f"({', '.join(sorted(named))}); a sealed run is one commit's work")
    clean = not any(c.endswith("+dirty") for c in from_notebooks | from_ledger)
    return full.pop(), clean, dict(notebooks=sorted(from_notebooks), ledger=sorted(from_ledger))


def _at_commit(commit: str, rel: str) -> str | None:
    try:
        return _sha(git("show", f"{commit}:{rel}", binary=True))
    except subprocess.CalledProcessError:
        return None


def _environment(cfg: Profile, commit: str) -> dict:
    recorded = {}
    for p in _executed(cfg):
        env = json.loads(p.read_text()).get("metadata", {}).get("allrep", {}).get("environment", {})
        recorded = {k: v for k, v in env.items() if k != "commit"}
        if recorded:
            break
    files = {rel: _at_commit(commit, rel) for rel in PINNED}
    names = git("ls-tree", "-r", "--name-only", commit, "--", RESOURCES).split()
    files |= {rel: _at_commit(commit, rel) for rel in names}
    pins = {}
    for line in git("show", f"{commit}:requirements.txt").splitlines():
        name, sep, version = line.split("#")[0].strip().partition("==")
        if sep:
            pins[name.strip()] = version.strip()
    return dict(recorded_by_run=recorded, pinned_packages=pins, pinned_files=files,
                sealed_on=dict(cpu=cpu(), cpus=os.cpu_count()))


# ----------------------------------------------------------------------------- seal, check, status
def path(cfg: Profile) -> Path:
    return places.output_dir(cfg) / FILE


def record(cfg: Profile) -> dict | None:
    """The seal of ``cfg``'s run, or None when it is not sealed."""
    p = path(cfg)
    return json.loads(p.read_text()) if p.is_file() else None


def make(cfg: Profile) -> dict:
    """The record (module doc) of ``cfg``'s run as its files stand now."""
    rows = ledger_rows(cfg)
    commit, clean, evidence = _evidence_commit(cfg, rows)
    sums = PROJECT_ROOT / "preregistration" / "SHA256SUMS"
    return dict(profile=cfg.name, split_seed=cfg.seed, commit=commit, clean=clean, commit_evidence=evidence,
                environment=_environment(cfg, commit), weights=_weights(cfg),
                preregistration=_sha(sums.read_bytes()) if sums.is_file() else None,
                stamps=_stamps(cfg), files=_run_files(cfg),
                ledger=dict(rows=len(rows), digest=_ledger_digest(rows)))


def seal(cfg: Profile) -> Path:
    """Write ``seal.json`` for ``cfg``'s run; an error when it is sealed already (a seal is never overwritten)."""
    p = path(cfg)
    if p.exists():
        raise AllrepError(f"run {cfg.name} is sealed already ({places.relative(p)}, commit "
                          f"{record(cfg)['commit'][:12]}); a seal is never overwritten")
    if not _executed(cfg):
        raise AllrepError(f"run {cfg.name} has no executed notebooks in {places.relative(places.executed_dir(cfg))}; "
                          f"run it first (allrep run --profile {cfg.name})")
    rec = make(cfg)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(rec, indent=1, sort_keys=True) + "\n")
        os.link(tmp, p)  # whole and exclusive at once: a seal that appeared meanwhile is never replaced
    except FileExistsError:
        raise AllrepError(f"run {cfg.name} was sealed meanwhile; a seal is never overwritten") from None
    finally:
        Path(tmp).unlink(missing_ok=True)
    return p


def check(cfg: Profile) -> list[str]:
    """What no longer matches ``cfg``'s seal (empty: verified). Code is not compared: only the record."""
    rec = record(cfg)
    if rec is None:
        return [f"run {cfg.name} is not sealed"]
    bad = []
    files, sealed = _run_files(cfg), rec["files"]
    for rel in sorted(set(sealed) | set(files)):
        if rel not in files:
            bad.append(f"{rel}: missing")
        elif rel not in sealed:
            bad.append(f"{rel}: not in the record")
        elif files[rel] != sealed[rel]:
            bad.append(f"{rel}: changed" + (" (cell outputs)" if rel.endswith("#outputs") else ""))
    stamps = _stamps(cfg)
    for name in sorted(set(stamps) | set(rec["stamps"])):
        if stamps.get(name) != rec["stamps"].get(name):
            bad.append(f"{name}: stamp changed")
    rows = ledger_rows(cfg)
    if len(rows) != rec["ledger"]["rows"] or _ledger_digest(rows) != rec["ledger"]["digest"]:
        bad.append(f"ledger: the run's rows changed ({len(rows)} rows, {rec['ledger']['rows']} sealed)")
    sums = PROJECT_ROOT / "preregistration" / "SHA256SUMS"
    if rec.get("preregistration") and (not sums.is_file() or _sha(sums.read_bytes()) != rec["preregistration"]):
        bad.append("preregistration/SHA256SUMS: changed")
    if _weights(cfg) != rec["weights"]:
        bad.append("weights: the run's results name other weights than the seal")
    try:
        commit = _evidence_commit(cfg, rows)[0]
    except AllrepError as e:
        commit = str(e)
    if commit != rec["commit"]:
        bad.append(f"commit: the executed notebooks and ledger rows no longer name the sealed commit ({commit[:60]})")
    return bad


@dataclass(frozen=True)
class Status:
    commit: str
    problems: tuple

    @property
    def verified(self) -> bool:
        return not self.problems

    def __str__(self) -> str:
        state = "verified" if self.verified else f"{len(self.problems)} mismatch(es): " + "; ".join(self.problems[:3])
        return f"sealed at {self.commit[:12]} ({state})"


def status(cfg: Profile) -> Status | None:
    """None for a run that is not sealed."""
    rec = record(cfg)
    return None if rec is None else Status(rec["commit"], tuple(check(cfg)))


def refusal(cfg: Profile) -> str | None:
    """The one line a sealed run answers to anything that would re-execute it (None when not sealed)."""
    rec = record(cfg)
    if rec is None:
        return None
    return (f"run {cfg.name} is sealed at {rec['commit'][:12]} ({places.relative(path(cfg))}): its record is never "
            f"re-executed; replay its commit into scratch with `allrep replay {cfg.name}`")
