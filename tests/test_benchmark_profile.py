"""The timing profile (profiles/timing.yaml): the registered design on a split seed of its own, a scratch run
whose test scorings the project's ledger counts as benchmark looks, apart from every run's counts."""
import pandas as pd
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


def _scored(seed: int, k: int) -> list[dict]:
    """One outer split of 4 test images, k of them right, scored as the runner scores a probabilities file."""
    df = pd.DataFrame(dict(dataset="IDB2", protocol="grouped", repeat=0, backbone="mobilenetv2", member=0,
                           id=[f"Im{i:03d}_1" for i in range(4)], label=[1, 1, 0, 0],
                           p_all=[0.9, 0.9 if k > 1 else 0.1, 0.1 if k > 2 else 0.9, 0.1 if k > 3 else 0.9]))
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
