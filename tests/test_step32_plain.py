"""Step 32: the plain reference heads cover every split and converge (early stopping, never the cap)."""
import pandas as pd
from conftest import ROOT

from allrep.profile import load_profile
from allrep.steps.step30_ensemble import PROB_COLUMNS


def test_plain_heads_cover_every_split_and_stop_early():
    cfg = load_profile("paper")
    for bb in cfg.use_backbones:
        for ds in cfg.datasets:
            probs = pd.read_csv(ROOT / "results" / "probabilities" / f"{ds}_{bb}_plain.csv")
            assert list(probs.columns) == PROB_COLUMNS and (probs["member"] == 0).all()
            ens = pd.read_csv(ROOT / "results" / "probabilities" / f"{ds}_{bb}.csv")
            ens = ens[ens["member"] == 0]
            key = ["protocol", "repeat", "id"]
            assert sorted(map(tuple, probs[key].values)) == sorted(map(tuple, ens[key].values))  # same test images
            m = pd.read_csv(ROOT / "results" / "probabilities" / f"{ds}_{bb}_plain_members.csv")
            assert len(m) == 1 + cfg.splits.repeats
            assert (m["ended_by"] == "early stopping").all(), m[m["ended_by"] != "early stopping"]
            assert (m["epochs_run"] < cfg.plain.training.epochs).all()
