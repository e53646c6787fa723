"""Step 70: the committed held-out predictions are of whole held-out photograph groups, read by file."""
import pandas as pd
from conftest import ROOT

from allrep.data import manifest
from allrep.profile import load_profile
from allrep.splits import items_frame
from allrep.steps import step70_using_models as step


def test_held_out_predictions_cover_exactly_the_held_out_groups():
    cfg = load_profile("paper")
    groups = step.held_out_groups(cfg.seed)
    assert groups == step.held_out_groups(cfg.seed) and len(groups) == 4  # two per class, from the seed
    df = items_frame("IDB2")
    assert set(df.loc[df["group"].isin(groups), "label"]) == {0, 1}
    pred = pd.read_csv(ROOT / "results" / "using" / "IDB2_held_out.csv")
    assert sorted(pred["id"]) == sorted(df.loc[df["group"].isin(groups), "id"])
    labels = {it.id: ("ALL" if it.label else "healthy") for it in manifest("IDB2")}
    assert (pred["label"] == pred["id"].map(labels)).all()
    assert pred["p_all_fused"].between(0, 1).all() and set(pred["predicted"]) <= {"ALL", "healthy"}
    assert ((pred["p_all_fused"] > 0.5) == (pred["predicted"] == "ALL")).all()
    assert (pred["mutual_information"] <= pred["entropy"] + 1e-6).all()
    assert "image" not in pred  # by id: no machine path in a committed file
