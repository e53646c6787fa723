"""Step 20: the committed tuning records, and the search space written once."""
import pandas as pd
from conftest import ROOT

from allrep.book.tables import search_space_markdown
from allrep.profile import Head, load_profile, load_section
from allrep.train.tuning import space_table


def test_every_split_has_its_own_search_inside_the_space():
    cfg = load_profile("paper")
    arch = cfg.head.to_dict()
    for bb in cfg.use_backbones:
        for ds in cfg.datasets:
            best = pd.read_csv(ROOT / "results" / "tuning" / f"best_{bb}_{ds}.csv")
            trials = pd.read_csv(ROOT / "results" / "tuning" / f"trials_{bb}_{ds}.csv")
            splits = [("paper", 0)] + [("grouped", r) for r in range(cfg.splits.repeats)]
            assert list(zip(best["protocol"], best["repeat"])) == splits  # nested: one search per split
            assert len(trials) == cfg.tuning.trials * len(splits)
            for row in best.to_dict("records"):
                hp = load_section(Head, {k: row[k] for k in arch}, "best")
                assert {k: getattr(hp, k) for k in ("projection", "gru_units", "dense_units")} == \
                    {k: arch[k] for k in ("projection", "gru_units", "dense_units")}  # the recipe's architecture
                assert 3e-4 <= hp.learning_rate <= 3e-2 and 1e-6 <= hp.weight_decay <= 1e-1 and 0 <= hp.dropout <= 0.5
                mine = trials[(trials["protocol"] == row["protocol"]) & (trials["repeat"] == row["repeat"])]
                assert abs(row["val_loss"] - mine["val_loss"].min()) < 1e-6  # the best is its own search's best


def test_the_book_search_space_table_is_generated_from_the_hypermodel():
    assert (ROOT / "book" / "_generated" / "search_space.md").read_text() == search_space_markdown()
    assert list(space_table()["hyperparameter"]) == ["learning_rate", "weight_decay", "dropout"]
