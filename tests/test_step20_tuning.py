"""Step 20: the committed tuning records, and the search space written once."""
import json

from conftest import ROOT

from allrep.profile import Head, load_profile, load_section
from allrep.tables import search_space_markdown
from allrep.tuning import space_table


def test_every_variant_has_a_best_record_inside_the_search_space():
    cfg = load_profile("paper")
    space = space_table().set_index("hyperparameter")
    for bb in cfg.use_backbones:
        for ds in cfg.datasets:
            rec = json.loads((ROOT / "results" / "tuning" / f"best_{bb}_{ds}.json").read_text())
            assert (rec["backbone"], rec["dataset"], rec["protocol"]) == (bb, ds, cfg.tuning.protocol)
            hp = load_section(Head, rec["hyperparameters"], "best")
            for name in ("projection", "gru_units", "dense_units"):
                assert str(getattr(hp, name)) in space.loc[name, "values"].split(", ")
            assert 1e-4 <= hp.learning_rate <= 3e-3 and 0 <= hp.dropout <= 0.5


def test_the_book_search_space_table_is_generated_from_the_hypermodel():
    assert (ROOT / "book" / "_generated" / "search_space.md").read_text() == search_space_markdown()
    assert list(space_table()["hyperparameter"]) == list(Head.__dataclass_fields__)
