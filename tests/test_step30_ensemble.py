"""Step 30: committed probabilities match the split files; a killed ensemble keeps finished members."""
import json

import pandas as pd
import pytest
from conftest import ROOT

from allrep.evaluate.scores import PROB_COLUMNS
from allrep.profile import load_profile
from allrep.steps import step30_ensemble as step


def test_committed_probabilities_cover_each_split_test_part_once_per_member():
    cfg = load_profile("paper")
    for bb in cfg.use_backbones:
        for ds in cfg.datasets:
            probs = pd.read_csv(ROOT / "results" / "probabilities" / f"{ds}_{bb}.csv")
            assert list(probs.columns) == PROB_COLUMNS
            for protocol in ("paper", "grouped"):
                sp = pd.read_csv(ROOT / "results" / "splits" / f"{ds}_{protocol}.csv")
                for r, part in sp.groupby("repeat"):
                    test = sorted(part.loc[part["role"] == "test", "id"])
                    got = probs[(probs["protocol"] == protocol) & (probs["repeat"] == r)]
                    for m, g in got.groupby("member"):
                        assert sorted(g["id"]) == test, (bb, ds, protocol, r, m)
                    assert got["member"].nunique() == cfg.ensemble.members
            meta = json.loads((ROOT / "results" / "probabilities" / f"{ds}_{bb}.json").read_text())
            assert meta["weights"]["kind"] in ("imagenet-file", "imagenet-official", "random")
            assert "/" not in (meta["weights"]["path"] or "")  # a file name, never a machine's path


@pytest.mark.slow
def test_killed_ensemble_keeps_finished_members(weights_dir, data_root, tmp_path, monkeypatch):
    from dataclasses import replace

    from allrep.record import places
    from allrep.runner.context import Context
    from allrep.runner.registry import get_step
    from allrep.steps import step10_data_exploration as step10

    monkeypatch.setenv("ALLREP_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(places, "output_dir", lambda cfg: tmp_path / "results")
    cfg = load_profile("smoke")
    cfg = replace(cfg, use_backbones=("mobilenetv2",), ensemble=replace(cfg.ensemble, members=3),
                  splits=replace(cfg.splits, repeats=2))
    step10.splits(Context(get_step("10"), cfg, {}))
    ctx = Context(get_step("30"), cfg, {"backbone": "mobilenetv2", "dataset": "IDB1"})
    best = tmp_path / "results" / "tuning" / "best_mobilenetv2_IDB1.csv"
    best.parent.mkdir(parents=True)
    pd.DataFrame([dict(protocol=p, repeat=r, **cfg.head.to_dict()) for p, r in (("paper", 0), ("grouped", 0), ("grouped", 1))]
                 ).to_csv(best, index=False)
    from allrep.train import members

    class Killed(Exception):
        pass

    real, saved = members._Saving.done, []

    def killed_after_three(self, tid, res):  # the process dies while the fourth head ends
        if len(saved) == 3:
            raise Killed
        saved.append(tid)
        real(self, tid, res)

    monkeypatch.setattr(members._Saving, "done", killed_after_three)
    with pytest.raises(Killed):
        step.run(ctx)
    monkeypatch.setattr(members._Saving, "done", real)
    res = step.run(ctx)
    assert (res["members_reused"], res["members_trained"]) == (3, 6)  # x 3 splits (paper + 2 grouped)
    probs = res["probabilities"]
    assert sorted(probs["member"].unique()) == [0, 1, 2] and len(probs[probs["protocol"] == "paper"]) == 3 * 22
    again = step.run(ctx)
    assert again["members_trained"] == 0 and again["probabilities"].equals(probs)


def test_every_member_says_what_ended_its_training():
    from allrep.train.heads import convergence, ended_by

    assert ended_by(16, 12, 4) == "early stopping" and ended_by(16, 14, 4) == "epoch cap"
    cfg = load_profile("paper")
    for bb in cfg.use_backbones:
        for ds in cfg.datasets:
            m = pd.read_csv(ROOT / "results" / "probabilities" / f"{ds}_{bb}_members.csv")
            assert len(m) == cfg.ensemble.members * (1 + cfg.splits.repeats)
            assert (m["epochs_run"] <= cfg.training.epochs).all() and (m["best_epoch"] <= m["epochs_run"]).all()
            c = convergence(m)
            assert (c["early stopping"] + c["epoch cap"]).sum() == len(m)


def test_epochs_summary_counts_members_and_their_epochs():
    import pandas as pd

    from allrep.train.heads import epochs_summary

    m = pd.DataFrame(dict(protocol=["grouped"] * 4 + ["paper"] * 2, epochs_run=[10, 12, 30, 11, 20, 31],
                          best_epoch=[0, 2, 20, 1, 10, 21]))
    s = epochs_summary(m).set_index("protocol")
    assert s.loc["grouped"].tolist() == [4, 11.5, 30, 1.5] and s.loc["paper"].tolist() == [2, 25.5, 31, 15.5]
