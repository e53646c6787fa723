"""The timing profile (profiles/timing.yaml): the registered design on a split seed of its own, a scratch run
whose test scorings the project's ledger counts as benchmark looks, apart from every run's counts."""
import os
from pathlib import Path

import pandas as pd
import pytest
from conftest import ROOT

from allrep.profile import load_profile, plain_dict
from allrep.record import ledger, places
from allrep.record.runs import committed, run_of


def test_the_timing_profile_is_the_registered_design_on_its_own_seed():
    timing, registered = load_profile("timing"), load_profile("confirmatory")
    a, b = plain_dict(timing), plain_dict(registered)
    assert {k for k in a if a[k] != b[k]} == {"name", "seed"}
    seeds = {load_profile(r.profile).seed for r in committed()} | {load_profile("smoke").seed}
    assert timing.seed not in seeds
    lg = ledger.read(ROOT / "results" / "ledger.csv")
    assert lg.loc[lg["split_seed"].astype(int) == timing.seed, "look"].eq(ledger.BENCHMARK).all()


def test_a_timing_run_is_a_scratch_run():
    cfg = load_profile("timing")
    assert not run_of(cfg).committed
    assert places.scratch_root() in places.output_dir(cfg).parents


def _scored_frame(k: int) -> dict:
    """One outer split of 4 test images of a probabilities file, k of them right (k >= 1)."""
    return dict(dataset="IDB2", protocol="grouped", repeat=0, backbone="mobilenetv2", member=0,
                id=[f"Im{i:03d}_1" for i in range(4)], label=[1, 1, 0, 0],
                p_all=[0.9, 0.9 if k > 1 else 0.1, 0.1 if k > 2 else 0.9, 0.1 if k > 3 else 0.9])


def _scored(seed: int, k: int) -> list[dict]:
    """:func:`_scored_frame` scored as the runner scores a probabilities file."""
    df = pd.DataFrame(_scored_frame(k))
    return [dict(r, commit="c", date="d", look="new") for r in ledger.scorings(df, "probabilities/IDB2_mobilenetv2.csv", seed)]


def test_benchmark_rows_are_counted_on_their_own_seed_and_labelled_so():
    timing, registered = load_profile("timing"), load_profile("confirmatory")
    own = pd.DataFrame(_scored(registered.seed, 3), columns=ledger.COLUMNS)
    bench = ledger.as_benchmark(pd.DataFrame(_scored(timing.seed, 2), columns=ledger.COLUMNS), "a note")
    assert set(bench["look"]) == {ledger.BENCHMARK} and set(bench["added"]) == {ledger.BENCHMARK}
    assert list(bench["k"]) == [2] and list(bench["split_seed"]) == [timing.seed]
    c = ledger.counts(pd.concat([own, bench], ignore_index=True)).set_index("split_seed")
    assert c.loc[timing.seed, "label"] == ledger.BENCHMARK and c.loc[timing.seed, "benchmark"] == 1
    assert c.loc[timing.seed, "max_looks_per_split_and_model"] == 0  # not a look at a run's test part
    assert c.loc[registered.seed, "label"] != ledger.BENCHMARK and c.loc[registered.seed, "benchmark"] == 0
    assert c.loc[registered.seed, "max_looks_per_split_and_model"] == 1


def _benchmark_script():
    import importlib.util

    spec = importlib.util.spec_from_file_location("benchmark_script", ROOT / "scripts" / "benchmark.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("ending", ["success", "failure", "stopped"])
def test_the_timing_run_s_scorings_enter_the_ledger_as_benchmark_rows_however_it_ends(tmp_path, monkeypatch, ending):
    """scripts/benchmark.py registered_design with the run faked: the test file it left is scored into the
    project's ledger (here a copy) as benchmark rows on the timing seed, also when the run failed or the benchmark
    was stopped (a real SIGTERM, passed on to the run as SIGINT); its seconds per step add up its variants."""
    import json
    import signal

    bench = _benchmark_script()
    project_ledger = tmp_path / "ledger.csv"
    monkeypatch.setattr(places, "ledger_path", lambda cfg: project_ledger)
    monkeypatch.setenv("ALLREP_SCRATCH", str(tmp_path / "project_scratch"))
    signals = []

    class FakeRun:  # the timing run faked
        def __init__(self, cmd, env=None, stdout=None, **kw):
            assert cmd[-2:] == ["--profile", "timing"] and env["ALLREP_CACHE"] != os.environ.get("ALLREP_CACHE")
            results = Path(env["ALLREP_SCRATCH"]) / "timing" / "results"
            (results / "probabilities").mkdir(parents=True)
            pd.DataFrame(_scored_frame(3)).to_csv(results / "probabilities" / "IDB2_mobilenetv2.csv", index=False)
            (results / "timings").mkdir()
            assert kw["start_new_session"] and signal.getsignal(signal.SIGINT) not in (signal.SIG_IGN, None)
            last = {"30_ensemble__stopped": 12.0} if ending == "stopped" else {"30_ensemble__units": 30.0}
            (results / "timings" / "runs.json").write_text(json.dumps([{"variants": {
                "20_tuning__units": 60.0, "20_tuning__mobilenetv2_IDB2": 6.0, **last},
                **({"interrupted": True} if ending == "stopped" else {})}]))
            stdout.write("the run's output\n")

        def wait(self):
            if ending == "stopped":
                os.kill(os.getpid(), signal.SIGTERM)
            return {"success": 0, "failure": 1, "stopped": 130}[ending]  # 130: allrep's exit on Ctrl-C

        def send_signal(self, sig):
            signals.append(sig)

    real = bench.subprocess.Popen
    monkeypatch.setattr(bench.subprocess, "Popen",  # git and anything else run for real
                        lambda cmd, **kw: FakeRun(cmd, **kw) if "allrep.cli" in cmd else real(cmd, **kw))
    if ending == "failure":
        with pytest.raises(SystemExit, match="timing run failed"):
            bench._registered_design()
    else:
        out = bench._registered_design()
        last = {"30_ensemble": 12.0} if ending == "stopped" else {"30_ensemble": 30.0}
        assert out["per_step"] == {"20_tuning": 66.0, **last} and out["ledger_rows"] == 1
        assert out.get("interrupted", False) == (ending == "stopped") and signals == (
            [signal.SIGINT] if ending == "stopped" else [])
        assert out.get("stopped_in", []) == (["30_ensemble"] if ending == "stopped" else [])
    assert (tmp_path / "project_scratch" / "benchmark_registered_design.log").read_text() == "the run's output\n"
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # the benchmark's handlers are gone again
    lg = ledger.read(project_ledger)
    assert list(lg["look"]) == [ledger.BENCHMARK] and list(lg["k"]) == [3]
    assert list(lg["split_seed"].astype(int)) == [load_profile("timing").seed]


def test_the_book_says_whether_the_timing_run_finished():
    from allrep.book.tables import _registered_design_md

    r = dict(when="2026-12-07 21:29", commit="abc", profile="timing", split_seed=7, minutes=93.4, cpus=2,
             per_step={"20_tuning": 1800.0, "10_data_exploration": 36.0})
    done = _registered_design_md(r)
    assert "took 93.4 minutes on 2 CPU cores" in done and "10_data_exploration 0.6, 20_tuning 30.0" in done
    cut = _registered_design_md(dict(r, interrupted=True, stopped_in=["30_ensemble"]))
    assert "stopped after 93.4 minutes" in cut and "in step 30_ensemble" in cut and "took" not in cut
    assert _registered_design_md(None) == ""
