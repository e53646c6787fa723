"""Measure, on the machine it runs on, what the paper profile costs; write results/benchmark.json.

    python scripts/benchmark.py [--profile paper] [--images 32]

* feature extraction: images (views) per second through each frozen backbone,
  at the profile's input size and weights, into a throw-away cache;
* head training: training samples per second of one GRU head on features of the
  backbone's (pooled, PCA-reduced) shape;
* one member end to end per backbone on ALL-IDB2's paper split with the profile's
  settings, once features exist (they are computed first if missing, not timed);
* ``head_training``: heads trained per second for tuning trials, ensemble members and plain heads,
  the code of commit 3d86d16 (``before``) and today's (``after``) measured in one run on the same
  cached features (scripts/bench_heads.py), with the arithmetic rate head training reaches beside a
  large matmul's on the same cores;
* ``smoke_workers``: wall time of the smoke profile from an empty cache, serial and on a local Dask
  cluster of 1 and 2 workers;
* ``head_profile``: where a head's training time goes per recipe (the registered 4 x 64, the base 16 x 256, and
  16 x 1,280 with a learned projection; scripts/profile_heads.py): the engine's parts, one step at 1 and 16
  stacked heads, plain ``keras.Model.fit``, with the code of commit PROFILE_BEFORE and today's on TensorFlow,
  and today's on JAX when ``--jax-python`` names a Python that has JAX and Keras.

* ``final_models``: step 70's final models of one dataset for the registered design (its committed splits and
  step 20 tables, a throw-away members cache beside the shared features): with the recipe choice and search run
  again on the final split (the code before the reuse), and reusing the decisions of the outer split the
  held-out groups come from (today's step 70).

* ``registered_design``: ``allrep run --profile timing`` from an empty cache and scratch folder, serial: the
  registered design's full work (every setting of the confirmatory profile, another split seed). Its test
  scorings enter the project's ledger marked ``benchmark`` with that seed; its scores are never reported (not
  even here: only seconds).

``--parts`` picks what to measure; the other keys of an existing file are kept, each with its date.

The book's reproduce page shows the file. Timings are not tests: nothing here
asserts a speed.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--profile", default="paper")
    ap.add_argument("--images", type=int, default=32)
    ap.add_argument("--out", default=None)
    ap.add_argument("--parts", nargs="*", default=["backbones", "predict", "head_training", "smoke_workers",
                                                   "head_profile"])
    ap.add_argument("--jax-python", default=None, help="a Python with jax and keras, for head_profile on JAX")
    ap.add_argument("--trials", type=int, default=3, help="tuning trials per search in head_training")
    ap.add_argument("--final-dataset", default="IDB2", help="the dataset of final_models")
    a = ap.parse_args(argv)
    from allrep import repro
    from allrep.profile import load_profile

    cfg = load_profile(a.profile)
    from allrep.record.seal import refusal

    if refusal(cfg) is not None and not getattr(a, "out", None):  # a sealed run's folder is a record
        raise SystemExit(refusal(cfg))
    repro.setup(cfg.seed)
    repro.quiet_backend()
    env = repro.environment()  # the backend started: the accelerator it sees is recorded
    from allrep.data.dataset import manifest
    from allrep.data.splits import make_splits
    from allrep.runner.registry import other_output
    from allrep.train.backbones import weights_for
    from allrep.train.features import FeatureCache, for_backbone, split_arrays
    from allrep.train.head_lists import train_heads

    dest = Path(a.out) if a.out else other_output("benchmark", cfg)  # declared in allrep.runner.registry
    out = json.loads(dest.read_text()) if dest.is_file() else {}
    out["profile"] = cfg.name
    if "backbones" in a.parts or "environment" not in out:  # the top-level environment and `when` are the backbones'
        out["environment"] = env
    when = time.strftime("%Y-%m-%d %H:%M")
    items = manifest("IDB2")[: a.images]
    views = cfg.features.views
    if "backbones" in a.parts:
        out.update(backbones={}, when=when)
    for bb in (cfg.use_backbones if "backbones" in a.parts else ()):
        w = weights_for(cfg, bb)
        with tempfile.TemporaryDirectory() as tmp:
            fc = FeatureCache(w, tmp, cfg.features.batch_size, pool=cfg.features.pool)
            fc.model()  # build outside the timing
            t0 = time.perf_counter()
            fc.ensure(items, views)
            dt = time.perf_counter() - t0
        feat_rate = len(items) * views / dt
        # one member end to end on the real paper split (features from the main cache)
        fc = for_backbone(cfg, bb)
        s = cfg.splits
        split = make_splits("IDB2", "paper", cfg.seed, s.test_fraction, s.val_fraction)
        arr = split_arrays(fc, split, views)
        t0 = time.perf_counter()  # timing only: the profile's default head (accuracy belongs to the pipeline)
        res = train_heads([dict(X_train=arr["train"][0], y_train=arr["train"][1], X_val=arr["val"][0],
                                y_val=arr["val"][1], X_test=arr["test"][0], hp=cfg.head, seed=1)],
                          cfg.training.epochs, cfg.training.patience, cfg.training.batch_size, cfg.training.min_delta)[0]
        member_s = time.perf_counter() - t0
        out["backbones"][bb] = dict(
            weights=w.kind, input_size=w.input_size, feature_images_per_second=round(feat_rate, 1),
            all_368_images_seconds_estimate=round(368 * views / feat_rate, 0),
            head_samples_per_second=round(res["epochs_run"] * len(arr["train"][0]) / res["train_seconds"], 0),
            member_seconds=round(member_s, 1), member_epochs=res["epochs_run"],
            sequence=list(arr["train"][0].shape[1:]))
        print(bb, out["backbones"][bb], flush=True)
    if "predict" in a.parts:
        out["predict"] = _predict_speed(cfg)
        print("predict", out["predict"], flush=True)
    if "head_training" in a.parts:
        out["head_training"] = dict(_head_training(cfg, a.trials), when=when, commit=env["commit"])
        print("head_training", out["head_training"], flush=True)
    if "smoke_workers" in a.parts:
        out["smoke_workers"] = dict(_smoke_workers(), when=when, commit=env["commit"])
        print("smoke_workers", out["smoke_workers"], flush=True)
    if "head_profile" in a.parts:
        out["head_profile"] = dict(_head_profile(a.jax_python), when=when, commit=env["commit"])
        print("head_profile", out["head_profile"], flush=True)
    if "final_models" in a.parts:
        out["final_models"] = dict(_final_models(a.final_dataset), when=when, commit=env["commit"])
        print("final_models", out["final_models"], flush=True)
    if "registered_design" in a.parts:
        res = dict(_registered_design(), when=when, commit=env["commit"])
        done = out.get("registered_design")
        # a stopped run never replaces a finished one's measurement: it is kept beside it
        out["registered_design_stopped" if res.get("interrupted") and done and not done.get("interrupted")
            else "registered_design"] = res
        print("registered_design", res, flush=True)
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(out, indent=1, default=str) + "\n")
    print(f"wrote {dest}")


BEFORE = "3d86d16"  # the last commit before the member engine
ROOT = Path(__file__).resolve().parent.parent


@contextlib.contextmanager
def _package_at(commit: str):
    """A temporary folder holding the package and profiles of ``commit`` (git archive)."""
    with tempfile.TemporaryDirectory() as folder:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit, "allrep", "profiles"], check=True,
                                 capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", folder], input=archive, check=True)
        yield folder


def _last_json_line(command: list, env: dict, package: str) -> dict:
    """Run a measuring script in a fresh process with ``package`` first on the path; its last line, parsed."""
    r = subprocess.run(command, env=dict(env, PYTHONPATH=package, TF_CPP_MIN_LOG_LEVEL="3"), cwd=package,
                       capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(f"{Path(command[1]).name} failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def _head_training(cfg, trials: int) -> dict:
    """scripts/bench_heads.py with today's package and with the one of commit BEFORE, one after the other,
    in fresh processes on the same cached features."""

    script = ROOT / "scripts" / "bench_heads.py"
    env = dict(os.environ, ALLREP_CACHE=str(Path(os.environ.get("ALLREP_CACHE", ROOT / ".cache")).resolve()))
    res = {}
    with _package_at(BEFORE) as old:
        for impl, path in (("before", old), ("after", str(ROOT))):
            res[impl] = _last_json_line([sys.executable, str(script), "--impl", impl, "--profile", cfg.name,
                                         "--trials", str(trials)], env, path)
    kinds = ("tuning_trials", "ensemble_members", "plain_heads")
    res["speedup"] = {k: round(res["after"][k]["heads_per_second"] / res["before"][k]["heads_per_second"], 2)
                      for k in kinds}
    res["commit_before"] = BEFORE
    return res


PROFILE_BEFORE = "0dc1fc5"  # the engine before its reused input blocks


def _head_profile(jax_python: str | None) -> dict:
    """scripts/profile_heads.py in fresh processes: the package of PROFILE_BEFORE and today's on TensorFlow, and
    today's on JAX (``jax_python``), one after the other on the same cores."""

    script = ROOT / "scripts" / "profile_heads.py"
    res = {}
    with _package_at(PROFILE_BEFORE) as old:
        runs = [("before", sys.executable, old, "tensorflow"), ("after", sys.executable, str(ROOT), "tensorflow")]
        if jax_python:
            runs.append(("after_jax", jax_python, str(ROOT), "jax"))
        for label, python, path, backend in runs:
            res[label] = _last_json_line([python, str(script)], dict(os.environ, KERAS_BACKEND=backend), path)
    res["speedup"] = {n: round(res["after"]["recipes"][n]["heads_per_second"] / res["before"]["recipes"][n]["heads_per_second"], 2)
                      for n in res["after"]["recipes"]}
    res["commit_before"] = PROFILE_BEFORE
    return res


def _smoke_workers() -> dict:
    """Wall seconds of `allrep run --profile smoke` from an empty cache and scratch folder: serial, and on
    a LocalCluster of 1 and of 2 workers (same data, weights and machine)."""
    import subprocess

    out = {}
    for label, extra in (("serial", []), ("workers_1", ["--workers", "1"]), ("workers_2", ["--workers", "2"])):
        with tempfile.TemporaryDirectory() as tmp:
            env = dict(os.environ, ALLREP_CACHE=f"{tmp}/cache", ALLREP_SCRATCH=f"{tmp}/scratch", TF_CPP_MIN_LOG_LEVEL="3")
            t0 = time.perf_counter()
            r = subprocess.run([sys.executable, "-m", "allrep.cli", "run", "--profile", "smoke", *extra], env=env,
                               capture_output=True, text=True)
            if r.returncode:
                raise SystemExit(f"smoke run {label} failed:\n{r.stderr[-3000:]}")
            out[label] = round(time.perf_counter() - t0, 1)
    out["ratio_1_to_2_workers"] = round(out["workers_1"] / out["workers_2"], 2)
    return out


def _final_models(dataset: str) -> dict:
    """Seconds of step 70's final models of ``dataset`` in the registered design, searched again and reused (module
    doc), each from an empty members cache (the features are shared and not timed)."""
    import os
    from types import SimpleNamespace

    import pandas as pd

    from allrep.cache import folder
    from allrep.profile import load_profile
    from allrep.record import places
    from allrep.record.runs import registered
    from allrep.steps import step70_using_models as step
    from allrep.train.features import for_backbone
    from allrep.train.final import train_final

    cfg = load_profile(registered().profile)
    out_dir = places.output_dir(cfg)
    ctx = SimpleNamespace(cfg=cfg, read_csv=lambda name, backbone, dataset: pd.read_csv(
        out_dir / "tuning" / f"best_{backbone}_{dataset}.csv"))
    repeat = cfg.recipe_study.repeat
    groups = step.held_out_groups(pd.read_csv(out_dir / "splits" / f"{dataset}_grouped.csv"), repeat, cfg.seed)
    from allrep.data.dataset import manifest

    for bb in cfg.use_backbones:  # features first, untimed
        for_backbone(cfg, bb).ensure(list(manifest(dataset)), cfg.features.views)
    features = folder("features")
    res = dict(dataset=dataset, profile=cfg.name, backbones=list(cfg.use_backbones))
    # the reused path first: the one measured second finds the features in the page cache
    for label, decided in (("reused", step.decided(ctx, dataset, repeat)), ("searched_again", None)):
        with tempfile.TemporaryDirectory() as tmp, mock.patch.dict(os.environ, ALLREP_CACHE=tmp):  # read at every call
            os.symlink(features, Path(tmp) / "features")
            t0 = time.perf_counter()
            train_final(cfg, dataset, groups, decided)
            res[f"{label}_seconds"] = round(time.perf_counter() - t0, 1)
        print(label, res, flush=True)
    res["ratio"] = round(res["searched_again_seconds"] / res["reused_seconds"], 2)
    return res


TIMING = "timing"  # profiles/timing.yaml: the registered design on another split seed


def _registered_design(profile: str = TIMING) -> dict:
    """Wall seconds of ``allrep run --profile timing`` from an empty cache and scratch folder, serial, with each
    step's seconds (its runs.json). The run's output goes to ``scratch/benchmark_registered_design.log`` as it
    runs. Stopped with Ctrl-C or SIGTERM, the run is stopped the same way (so it records the steps it finished and
    the one it stopped in) and the result says ``interrupted``. Every test-prediction file the run left goes into
    the project's ledger as benchmark rows (:func:`allrep.record.ledger.as_benchmark`), however the run ended:
    scored from the files, not from the run's own ledger, which misses a step that failed part-way."""
    import signal

    from allrep.profile import load_profile
    from allrep.record import ledger, places
    from allrep.record.runs import development
    from allrep.runner.pipeline import STOPPED
    from allrep.runner.registry import other_output

    cfg = load_profile(profile)
    project_ledger = places.ledger_path(load_profile(development().profile))
    log_path = places.scratch_root() / "benchmark_registered_design.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    stop, child = [], None

    def _stop(signum, frame):  # remembered, and passed on to the run, which records what it finished and exits
        stop.append(signum)
        if child is not None:
            child.send_signal(signal.SIGINT)

    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, ALLREP_CACHE=f"{tmp}/cache", ALLREP_SCRATCH=f"{tmp}/scratch", TF_CPP_MIN_LOG_LEVEL="3")
        with mock.patch.dict(os.environ, ALLREP_SCRATCH=env["ALLREP_SCRATCH"]):  # places reads it at every call
            results, timings = places.output_dir(cfg), other_output("timings", cfg)
        t0 = time.perf_counter()
        # Handlers first: a signal from now on is passed on, never lost between the start and the wait. A handled
        # signal is reset to its default in the child, so even a benchmark started from a shell that ignores SIGINT
        # (a background job) gives a run that turns it into KeyboardInterrupt. The run has a session of its own:
        # only the signal passed on reaches it, once.
        old = {sig: signal.signal(sig, _stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            with open(log_path, "w") as log:
                child = subprocess.Popen([sys.executable, "-m", "allrep.cli", "run", "--profile", profile], env=env,
                                         stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
                if stop:  # stopped while it started
                    child.send_signal(signal.SIGINT)
                returncode = child.wait()
        finally:  # interrupted or failed too: what it scored is counted
            for sig, handler in old.items():
                signal.signal(sig, handler)
            seconds = time.perf_counter() - t0
            files = [p for p in results.rglob("*.csv") if ledger.is_test_file(p.relative_to(results).as_posix())]
            rows = ledger.record(Path(tmp) / "benchmark_ledger.csv", results, files, cfg.seed, root=ROOT)
            note = f"scripts/benchmark.py registered_design (profile {profile}): timing only, never reported"
            ledger.append(project_ledger, ledger.as_benchmark(rows, note))
        run = json.loads(timings.read_text())[-1] if timings.is_file() else {"variants": {}}
        if returncode and not (stop and run.get("interrupted")):
            raise SystemExit(f"timing run failed after {seconds:.0f} s: see {log_path}")
    per_step: dict[str, float] = {}
    for variant, sec in run["variants"].items():
        step = variant.split("__", 1)[0]
        per_step[step] = round(per_step.get(step, 0.0) + sec, 1)
    out = dict(profile=profile, split_seed=cfg.seed, seconds=round(seconds, 1), minutes=round(seconds / 60, 1),
               per_step=per_step, ledger_rows=len(rows), cpus=os.cpu_count(), workers=1)
    if run.get("interrupted"):
        out["interrupted"] = True
        out["stopped_in"] = [v.removesuffix(STOPPED) for v in run["variants"] if v.endswith(STOPPED)]
    return out


def _predict_speed(cfg, n: int = 10, dataset: str = "IDB2") -> dict | None:
    """`allrep predict` on n ALL-IDB2 files: seconds with model loading (a fresh Predictor) and without
    (a loaded one), when the final models exist (step 70 or `allrep train-final` builds them)."""
    from allrep.data.dataset import data_root, manifest
    from allrep.errors import AllrepError
    from allrep.train.inference import Predictor, predict

    paths = [data_root() / it.relpath() for it in manifest(dataset)[:n]]
    t0 = time.perf_counter()
    try:
        pr = Predictor(cfg, dataset)
    except AllrepError as e:
        print(f"predict not measured: {e}")
        return None
    predict(paths, cfg.name, dataset, progress=False, predictor=pr)
    with_loading = time.perf_counter() - t0
    t0 = time.perf_counter()
    predict(paths, cfg.name, dataset, progress=False, predictor=pr)
    without = time.perf_counter() - t0
    return dict(images=n, dataset=dataset, seconds_with_model_loading=round(with_loading, 1),
                seconds_models_loaded=round(without, 1), images_per_second_loaded=round(n / without, 2))


if __name__ == "__main__":
    main()
