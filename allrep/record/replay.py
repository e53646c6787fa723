"""Replay a sealed run (:mod:`allrep.record.seal`): its own commit, run again from an empty cache, into scratch.

``allrep replay PROFILE`` checks the sealed commit out in a git worktree under
``$ALLREP_SCRATCH/replay/<profile>/src`` and runs that commit's own runner there (``python -m allrep.cli run``,
with the worktree first on ``PYTHONPATH``), with a cache of its own (``.../cache``), so nothing of the code or
the caches of today takes part. The worktree's results folder receives the replay's files; the project's
record is not touched, except that the replay's test scorings are appended to the test-set ledger with
``look = "replay"`` (a replay is a look, made by the sealed code). Then the record and the replay are set
side by side (:func:`compare`): each file's digest, each outer split's k, each claim's verdict.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

from allrep.errors import AllrepError
from allrep.io import atomic_write_csv
from allrep.profile import PROJECT_ROOT, Profile, load_profile
from allrep.record import places, seal

VOLATILE = ("timings/runs.json",)  # when and how long: a replay's own, never compared


def folder(cfg: Profile) -> Path:
    return places.scratch_root() / "replay" / cfg.name


def worktree(cfg: Profile, commit: str) -> Path:
    """A detached worktree of ``commit`` (created once; an existing one must be at that commit)."""
    src = folder(cfg) / "src"
    if (src / ".git").exists():
        head = subprocess.run(["git", "-C", str(src), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
        if head != commit:
            raise AllrepError(f"{src} holds commit {head[:12]}, not the sealed {commit[:12]}: remove it "
                              f"(git worktree remove --force {src})")
        return src
    src.parent.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["git", "-C", str(PROJECT_ROOT), "worktree", "add", "--detach", "--force", str(src), commit],
                          capture_output=True, text=True)
    if done.returncode:
        raise AllrepError(f"could not check out commit {commit[:12]} for the replay: {done.stderr.strip()}")
    return src


def _ledger(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype={"commit": str, "digest": str, "split_set": str}) if path.is_file() \
        else pd.DataFrame()


def command(cfg: Profile, steps=None, datasets=None, backbones=None, workers=None) -> list[str]:
    cmd = [sys.executable, "-m", "allrep.cli", "run", "--profile", cfg.name]
    for flag, values in (("--steps", steps), ("--datasets", datasets), ("--backbones", backbones)):
        if values:
            cmd += [flag, *values]
    if workers:
        cmd += ["--workers", str(workers)]
    return cmd


def replay(profile: str, steps=None, datasets=None, backbones=None, workers=None, say=print) -> pd.DataFrame:
    """Run the sealed commit of ``profile`` into scratch (module doc); returns :func:`compare`'s table."""
    cfg = load_profile(profile)
    rec = seal.record(cfg)
    if rec is None:
        raise AllrepError(f"run {cfg.name} is not sealed: nothing to replay (allrep run --profile {cfg.name} runs it)")
    src = worktree(cfg, rec["commit"])
    replay_ledger = src / places.ledger_path(cfg).relative_to(PROJECT_ROOT)
    before = len(_ledger(replay_ledger))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(src), os.environ.get("PYTHONPATH")])),
               ALLREP_CACHE=str(folder(cfg) / "cache"), ALLREP_SCRATCH=str(folder(cfg) / "scratch"))
    env.pop("ALLREP_PROFILES", None)
    say(f"replay of {cfg.name} at {rec['commit'][:12]} in {src} (its own cache: {env['ALLREP_CACHE']})")
    done = subprocess.run(command(cfg, steps, datasets, backbones, workers), cwd=src, env=env)
    if done.returncode:
        raise AllrepError(f"the replay's runner failed (exit {done.returncode}); its partial files are in {src}")
    rows = _ledger(replay_ledger).iloc[before:]
    if len(rows):
        rows = rows.assign(look="replay")
        ledger_path = places.ledger_path(cfg)
        atomic_write_csv(pd.concat([_ledger(ledger_path), rows], ignore_index=True), ledger_path)
    return compare(cfg, src, rows)


def _replayed_digest(src: Path, rel: str) -> str | None:
    name = rel.removesuffix("#outputs")
    p = src / name
    if not p.is_file():
        return None
    return seal.notebook_digest(p) if rel.endswith("#outputs") else seal._sha(p.read_bytes())


def compare(cfg: Profile, src: Path, replay_rows: pd.DataFrame | None = None) -> pd.DataFrame:
    """The record and the replay side by side: one row per sealed file (``what`` = file: sealed and replayed
    digest), per outer split and model the replay scored (``what`` = k), per claim (``what`` = verdict)."""
    rec = seal.record(cfg)
    rows = []
    for rel, sealed in sorted(rec["files"].items()):
        if rel.endswith(VOLATILE):
            continue
        got = _replayed_digest(src, rel)
        rows.append(dict(what="file", item=rel, sealed=sealed[:12], replay=(got or "")[:12],
                         same=None if got is None else got == sealed))
    if replay_rows is not None and len(replay_rows):
        mine = seal.ledger_rows(cfg).set_index(["dataset", "protocol", "repeat", "models"])
        for r in replay_rows.itertuples():
            key = (r.dataset, r.protocol, r.repeat, r.models)
            k = int(mine.loc[key, "k"]) if key in mine.index else None
            rows.append(dict(what="k", item=" ".join(map(str, key)), sealed=k, replay=int(r.k), same=k == int(r.k)))
    claims_rel = places.relative(places.output_dir(cfg) / "claims.csv")
    if (src / claims_rel).is_file() and (PROJECT_ROOT / claims_rel).is_file():
        a, b = pd.read_csv(PROJECT_ROOT / claims_rel), pd.read_csv(src / claims_rel)
        if "verdict" in a.columns and "verdict" in b.columns and len(a) == len(b):
            for (_, x), (_, y) in zip(a.iterrows(), b.iterrows()):
                item = " ".join(str(x[c]) for c in ("dataset", "protocol", "models") if c in a.columns)
                rows.append(dict(what="verdict", item=item, sealed=x["verdict"], replay=y["verdict"],
                                 same=x["verdict"] == y["verdict"]))
    return pd.DataFrame(rows, columns=["what", "item", "sealed", "replay", "same"])


def summary(table: pd.DataFrame) -> str:
    """One line per kind of row: how many were replayed and how many match the record."""
    lines = []
    for what, g in table.groupby("what", sort=False):
        done = g[g["same"].notna()]
        lines.append(f"{what}: {int(done['same'].astype(bool).sum())} of {len(done)} replayed match the record"
                     + (f" ({len(g) - len(done)} not replayed)" if len(done) < len(g) else ""))
    return "\n".join(lines)

