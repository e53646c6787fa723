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
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd

from allrep.errors import AllrepError
from allrep.profile import PROJECT_ROOT, Profile, load_profile
from allrep.record import ledger, places, seal
from allrep.record.history import git
from allrep.repro import NUMERICS

VOLATILE = ("timings/runs.json",)  # when and how long: a replay's own, never compared


def folder(cfg: Profile) -> Path:
    return places.scratch_root() / "replay" / cfg.name


def worktree(cfg: Profile, commit: str) -> Path:
    """A detached worktree of ``commit`` (created once; an existing one must be at that commit)."""
    src = folder(cfg) / "src"
    if (src / ".git").exists():
        head = git("rev-parse", "HEAD", root=src).strip()
        if head != commit:
            raise AllrepError(f"{src} holds commit {head[:12]}, not the sealed {commit[:12]}: remove it "
                              f"(git worktree remove --force {src})")
        return src
    src.parent.mkdir(parents=True, exist_ok=True)
    try:
        git("worktree", "add", "--detach", "--force", str(src), commit)
    except subprocess.CalledProcessError as e:
        raise AllrepError(f"could not check out commit {commit[:12]} for the replay: {e.stderr.strip()}") from None
    return src


def command(cfg: Profile, steps=None, datasets=None, backbones=None, workers=None) -> list[str]:
    cmd = [sys.executable, "-m", "allrep.cli", "run", "--profile", cfg.name]
    for flag, values in (("--steps", steps), ("--datasets", datasets), ("--backbones", backbones)):
        if values:
            cmd += [flag, *values]
    if workers:
        cmd += ["--workers", str(workers)]
    return cmd


def remove(cfg: Profile) -> None:
    """Remove a replay's worktree (and git's entry for it), its cache and its outputs."""
    try:
        git("worktree", "remove", "--force", str(folder(cfg) / "src"))
    except subprocess.CalledProcessError:
        pass
    shutil.rmtree(folder(cfg), ignore_errors=True)
    git("worktree", "prune")


def check_weights(rec: dict, weights_dir: str | None) -> None:
    """The weights the replay would use must be the sealed run's: each ImageNet file's sha256 in the folder's
    manifest (``ALLREP_WEIGHTS_DIR``), or an error that says how to build them."""
    import yaml

    files = {bb: sha for bb, sha in rec["weights"].items() if len(sha) == 64}
    if not files:
        return
    man = Path(weights_dir or "", "manifest.yaml")
    have = yaml.safe_load(man.read_text()) if weights_dir and man.is_file() else {}
    wrong = sorted(bb for bb, sha in files.items() if (have.get(bb) or {}).get("sha256") != sha)
    if wrong:
        raise AllrepError(f"the sealed run used converted ImageNet files for {', '.join(wrong)}; build them with "
                          f"`allrep weights build DEST` and set ALLREP_WEIGHTS_DIR=DEST (now: {weights_dir or 'unset'})")


def replay(profile: str, steps=None, datasets=None, backbones=None, workers=None, resume: bool = False,
           say=print) -> pd.DataFrame:
    """Run the sealed commit of ``profile`` into scratch (module doc), from an empty cache and a fresh worktree
    (``resume``: continue an interrupted replay in the ones there); returns :func:`compare`'s table."""
    cfg = load_profile(profile)
    rec = seal.record(cfg)
    if rec is None:
        raise AllrepError(f"run {cfg.name} is not sealed: nothing to replay (allrep run --profile {cfg.name} runs it)")
    paths = {v: str(Path(os.environ[v]).expanduser().resolve()) for v in ("ALLREP_DATA", "ALLREP_WEIGHTS_DIR")
             if os.environ.get(v)}  # the replay's runner starts in the worktree: no path may be relative to here
    check_weights(rec, paths.get("ALLREP_WEIGHTS_DIR"))
    if not resume and folder(cfg).exists():
        remove(cfg)
    src = worktree(cfg, rec["commit"])
    replay_ledger = src / places.ledger_path(cfg).relative_to(PROJECT_ROOT)
    before = len(ledger.read(replay_ledger))
    env = dict(os.environ, **paths, PYTHONPATH=os.pathsep.join(filter(None, [str(src), os.environ.get("PYTHONPATH")])),
               ALLREP_CACHE=str(folder(cfg) / "cache"), ALLREP_SCRATCH=str(folder(cfg) / "scratch"))
    env.pop("ALLREP_PROFILES", None)
    for k in NUMERICS:  # a sealed commit's runner took these from its caller's environment, a shell without them;
        env.pop(k, None)  # a commit that pins them (allrep.repro.pin_numerics) sets them itself
    say(f"replay of {cfg.name} at {rec['commit'][:12]} in {src} (its own cache: {env['ALLREP_CACHE']})")
    try:
        done = subprocess.run(command(cfg, steps, datasets, backbones, workers), cwd=src, env=env)
    finally:  # every scoring the replay made is a look, whether or not the runner finished
        rows = ledger.read(replay_ledger).iloc[before:].assign(look="replay")
        ledger.append(places.ledger_path(cfg), rows)
    if done.returncode:
        raise AllrepError(f"the replay's runner failed (exit {done.returncode}); its partial files are in {src} "
                          f"(allrep replay {cfg.name} --resume continues it)")
    return compare(cfg, src, rows)


def _replayed_digest(src: Path, rel: str) -> str | None:
    name = rel.removesuffix("#outputs")
    p = src / name
    if not p.is_file():
        return None
    return seal.notebook_digest(p) if rel.endswith("#outputs") else seal.file_digest(p)


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

