"""The trained universes of the robustness analysis (allrep.record.universes): each is the registered pipeline, or
its plain reference, with exactly its one change; the amendment is committed before any of their files."""
import subprocess
from dataclasses import asdict, replace
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from allrep.profile import PROJECT_ROOT, load_profile
from allrep.record import places, universes
from allrep.record.history import git

CFG = load_profile("confirmatory")


def _registered_plans(backbone: str, dataset: str, step):
    """The registered run's own plans of a step (30 or 32) for the grouped splits, from its committed files."""
    out = places.output_dir(CFG)
    split = pd.read_csv(out / "splits" / f"{dataset}_grouped.csv")
    best = pd.read_csv(out / "tuning" / f"best_{backbone}_{dataset}.csv")
    ctx = SimpleNamespace(cfg=CFG, backbone=backbone, dataset=dataset,
                          each_split=lambda: [("grouped", int(r), g) for r, g in split.groupby("repeat", sort=True)],
                          read_csv=lambda name, **_: best)
    return [row[-1] for row in step.plans(ctx)]


def _plans(name: str, backbone="mobilenetv2", dataset="IDB2"):
    u = universes.universe(universes.load_plan(), name)
    return [p for *_, p in universes.plans(universes.profile_for(CFG, u), u, dataset, backbone, "grouped")]


def test_the_retrained_universe_is_the_registered_ensembles_plans():
    """No change: every plan (rows, head, training, seed) is the registered step 30's plan of the same member."""
    from allrep.steps import step30_ensemble

    for bb in ("mobilenetv2", "efficientnetb3"):
        mine, theirs = _plans("retrained", bb), _registered_plans(bb, "IDB2", step30_ensemble)
        assert len(mine) == 50 and mine == theirs


def test_an_untuned_universe_is_the_plain_reference_with_its_change():
    from allrep.steps import step32_plain

    ref = _registered_plans("inceptionv3", "IDB2", step32_plain)
    mine = _plans("pca_256_whitened_untuned", "inceptionv3")
    assert len(mine) == len(ref) == 50
    for a, b in zip(mine, ref):
        assert (a.rows, a.head, a.seed) == (b.rows, b.head, b.seed)
        assert a.training == replace(b.training, pca=256, whiten=True) != b.training


@pytest.mark.parametrize("name, head, training", [
    ("sequence_4x4_all_channels", {"projection": 64}, {"pool": 1, "pca": -1}),
    ("pca_256_whitened", {}, {"pca": 256, "whiten": True}),
    ("no_reduction", {}, {"pca": -1}),
])
def test_a_trained_universe_changes_only_its_change(name, head, training):
    base, mine = _plans("retrained"), _plans(name)
    for a, b in zip(mine, base):
        assert (a.rows, a.seed, a.backbone) == (b.rows, b.seed, b.backbone)
        assert a.head == replace(b.head, **head) and a.training == replace(b.training, **training)


def test_seed_replicates_and_one_view():
    """Replicates: new seeds (none shared with the registered members or each other), the same settings; one view:
    the same plans under a profile with one training view, so a different cache key."""
    from allrep.train import members

    base = _plans("retrained")
    reps = [_plans(f"seed_{k}") for k in (1, 2, 3)]
    seeds = [{p.seed for p in r} for r in reps] + [{p.seed for p in base}]
    assert all(len(s) == 50 for s in seeds) and len(set().union(*seeds)) == 200
    assert all((a.rows, a.head, a.training) == (b.rows, b.head, b.training) for r in reps for a, b in zip(r, base))
    one = universes.universe(universes.load_plan(), "one_view")
    cfg1 = universes.profile_for(CFG, one)
    assert cfg1.features.views == 1 and CFG.features.views == 8
    assert asdict(cfg1.features) != asdict(CFG.features)
    assert _plans("one_view") == base and members.cache_key("x", f=asdict(cfg1.features)) != members.cache_key(
        "x", f=asdict(CFG.features))


def test_the_amendment_was_committed_before_every_trained_file():
    """Every commit that touched a trained universe's file descends from the amendment in force, whose every
    change was itself committed as a plan amendment."""
    sha = universes.plan_commit()
    assert sha and git("log", "-1", "--format=%s", sha).startswith("Robustness plan")
    files = sorted(universes.TRAINED.glob("*.csv")) + [universes.TIMINGS]
    for p in files:
        if not p.exists():
            continue
        for c in git("log", "--format=%H", "--", p.relative_to(PROJECT_ROOT).as_posix()).split():
            assert c != sha and subprocess.run(["git", "merge-base", "--is-ancestor", sha, c],
                                               cwd=PROJECT_ROOT).returncode == 0, (p, c)


def test_every_universe_a_claim_is_given_is_planned_and_the_cut_is_not_given():
    plan = universes.load_plan()
    names = {u["name"] for u in plan["universes"]}
    cut = {c["name"] for c in plan["cut"]}
    assert not names & cut
    for ds, listed in plan["claims"].items():
        assert listed[0] == "retrained" and set(listed) <= names, ds
    assert len(plan["claims"]["IDB2"]) - 4 >= 8  # besides retrained and the three seed replicates
    assert min(len(v) for k, v in plan["claims"].items() if k != "IDB2") - 1 >= 4


def test_a_silently_changed_amendment_is_refused(tmp_path, monkeypatch):
    from allrep.errors import AllrepError

    changed = tmp_path / "plan_trained.yaml"
    changed.write_text(universes.PLAN.read_text().replace("pca: 256, whiten: true}", "pca: 128, whiten: true}"))
    monkeypatch.setattr(universes, "PLAN", changed)
    with pytest.raises(AllrepError, match="differs from the plan committed"):
        universes.load_plan()


def test_the_standardised_reduction_centres_and_scales_every_channel():
    from allrep.train.heads import STANDARDISED, Reduction

    rng = np.random.default_rng(0)
    X = rng.normal(3.0, [0.5, 2.0, 7.0], size=(40, 4, 3)).astype(np.float32)
    red = Reduction.fit(X, 1, STANDARDISED)
    Z = red(X).reshape(-1, 3)
    assert Z.shape == (160, 3) and np.allclose(Z.mean(0), 0, atol=1e-5) and np.allclose(Z.std(0), 1, atol=1e-4)
    again = Reduction.from_state(red.state())
    assert np.array_equal(again(X), red(X)) and red.sha256() == again.sha256()
    assert Reduction.from_state(Reduction.fit(X, 1, 0).state()).mean is None  # raw channels stay raw
