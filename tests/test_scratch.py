"""From-scratch recipes: settings, augmentation, schedule, BatchNorm momentum, and the fusion comparison."""
import numpy as np
import pandas as pd
import pytest

from allrep.errors import AllrepError
from allrep.evaluate.scores import scratch_fusion_table, scratch_glue, summarize
from allrep.profile import Recipe
from allrep.train.scratch import jitter_view


def test_recipe_rejects_unknown_settings():
    from allrep.profile import load_section

    with pytest.raises(AllrepError, match="unknown setting scratch.recipes.x.lr"):
        load_section(Recipe, {"epochs": 3, "lr": 0.1}, "scratch.recipes.x")
    assert load_section(Recipe, {"epochs": 3}, "r").epochs == 3


def test_jitter_view_is_a_seeded_dihedral_transform():
    img = np.arange(4 * 4 * 3, dtype=np.uint8).reshape(4, 4, 3)
    dihedral = [np.rot90(img, k) for k in range(4)] + [np.rot90(img, k)[:, ::-1] for k in range(4)]
    seen = set()
    rng = np.random.default_rng(0)
    for _ in range(64):
        v = jitter_view(img, rng, colour=False)
        match = [i for i, d in enumerate(dihedral) if np.array_equal(v, d)]
        assert len(match) == 1
        seen.add(match[0])
    assert seen == set(range(8))
    a = jitter_view(img, np.random.default_rng(5), colour=True)
    b = jitter_view(img, np.random.default_rng(5), colour=True)
    assert np.array_equal(a, b) and a.dtype == np.uint8


def test_warmup_then_cosine_schedule():
    from allrep.train.scratch import learning_rate

    r = Recipe(epochs=10, learning_rate=0.01, schedule="cosine", warmup_epochs=2)
    lr = [learning_rate(r, e) for e in range(10)]
    assert lr[0] == pytest.approx(0.001) and lr[1] == pytest.approx(0.0055)  # from 10% of the peak
    assert lr[2] == pytest.approx(0.01)  # end of the warm-up: the peak
    assert lr[6] == pytest.approx(0.005)  # half-way through the decay
    assert all(a > b for a, b in zip(lr[2:], lr[3:])) and lr[9] < 0.001
    assert {learning_rate(Recipe(learning_rate=0.003), e) for e in range(5)} == {0.003}  # naive: a constant


@pytest.mark.slow
def test_build_sets_batchnorm_momentum_and_trains_everything():
    import keras

    from allrep.profile import Head
    from allrep.train.backbones import resolve_weights
    from allrep.train.scratch import build

    w = resolve_weights("efficientnetb3", "none", input_size=32, seed=1)
    model = build(w, Head(projection=8, gru_units=8, dense_units=8), Recipe(bn_momentum=0.9))
    bns = [layer for layer in model.layers[1].layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(bns) > 50 and all(b.momentum == 0.9 for b in bns)
    assert len(model.trainable_weights) > 300  # the backbone trains, not only the head


def _fake(n=10):
    rng = np.random.default_rng(0)
    y = np.array([0, 1] * (n // 2))
    ids = [f"x{i}" for i in range(n)]
    good = np.where(y == 1, 0.9, 0.1)
    probs = []
    for bb, p in (("a", good), ("b", np.where(np.arange(n) < 2, 1 - good, good)), ("r", np.full(n, 0.6))):
        for m in range(2):
            probs.append(pd.DataFrame(dict(protocol="paper", repeat=0, dataset="IDB2", backbone=bb, member=m, id=ids,
                                           label=y, p_all=p)))
    scratch = pd.DataFrame(dict(recipe="ours", protocol="paper", repeat=0, dataset="IDB2", backbone="r", member=0,
                                id=ids, label=y, p_all=np.where(y == 1, 0.7, 0.2) + rng.uniform(0, 0.01, n)))
    return pd.concat(probs, ignore_index=True), scratch


def test_scratch_fusion_table_compares_on_the_same_images():
    probs, scratch = _fake()
    t = scratch_fusion_table("IDB2", probs, scratch, random_bb=["r"]).set_index("model")
    assert t.loc["from scratch (ours) alone", "n_correct"] == 10
    assert t.loc["r frozen random features alone", "n_correct"] == 5  # 0.6 everywhere: all called ALL
    # a and b disagree on two images with equal confidence: sum = 0.5, a tie, goes to healthy
    assert t.loc["sum fusion, a + b", "n_correct"] == 9
    # the random backbone's 0.6 breaks both ties towards ALL: right once, wrong once
    assert t.loc["sum fusion, + r frozen random features", "n_correct"] == 9
    assert t.loc["sum fusion, + from scratch (ours)", "n_correct"] == 10
    assert (t["n"] == 10).all()
    # a constant predictor is named, alone and wherever it is fused (never fused silently)
    assert t.loc["r frozen random features alone", "note"] == "constant prediction"
    assert t.loc["sum fusion, + r frozen random features", "note"] == "fuses a constant predictor: r"
    assert t.loc["from scratch (ours) alone", "note"] == "" and t.loc["sum fusion, a + b", "note"] == ""
    from allrep.evaluate.scores import notes_by_model

    notes = notes_by_model(t.reset_index())
    assert notes[("IDB2", "paper", "r frozen random features alone")] == "constant prediction (1/1 splits)"
    s = summarize(t.reset_index()).set_index("model")
    assert s["k"].to_dict() == t["n_correct"].to_dict()  # one split: pooled k is the split's k
    assert scratch_glue(t.reset_index()) == {"scratch_ours_IDB2_paper_k": 10, "scratch_ours_IDB2_paper_n": 10}


@pytest.mark.slow
def test_reused_scratch_trainer_equals_a_fresh_model():
    """Members share one compiled model; a reset must make it a freshly built one (random weights
    from the member's seed, BatchNorm statistics, optimiser and schedule at step 0)."""
    from allrep.profile import Head
    from allrep.train.backbones import resolve_weights
    from allrep.train.scratch import scratch_trainer, train_member

    scratch_trainer.cache_clear()  # the first member below is the first of a newly built model

    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, size=(24, 32, 32, 3), dtype=np.uint8)
    y = np.array([0, 1] * 12)
    w = resolve_weights("mobilenetv2", "none", input_size=32, seed=0)  # any backbone: same trainer
    hp = Head(projection=8, gru_units=8, dense_units=8)
    r = Recipe(epochs=2, batch_size=8, learning_rate=1e-3, schedule="cosine", warmup_epochs=1, weight_decay=0.01,
               bn_momentum=0.9, augment=True, label_smoothing=0.1, patience=5)
    args = (X[:16], y[:16], X[16:20], y[16:20], X[20:])
    fresh = train_member(w, hp, r, *args, seed=7)  # the first member of the trainer just built (traced once)
    train_member(w, hp, r, *args, seed=3)  # leaves trained weights, statistics and optimiser state in it
    reused = train_member(w, hp, r, *args, seed=7)
    assert np.allclose(fresh["p_test"], reused["p_test"], rtol=0, atol=1e-6)
    assert fresh["history"]["loss"] == pytest.approx(reused["history"]["loss"], abs=1e-6)
    other = train_member(w, hp, r, *args, seed=8)
    assert not np.allclose(fresh["p_test"], other["p_test"])
