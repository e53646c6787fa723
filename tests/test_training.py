"""Training on real ALL-IDB2 images (frozen MobileNetV2 with converted ImageNet weights, small input)."""
import numpy as np
import pytest

from allrep.data.splits import make_splits
from allrep.profile import Head, Training
from allrep.train.backbones import resolve_weights
from allrep.train.features import FeatureCache, view

pytestmark = pytest.mark.slow
# the tests that read the module's features (fixture idb2, about 15 s) run on one xdist worker, which computes them once
on_idb2 = pytest.mark.xdist_group("idb2-features")
SIZE = 129
HP = Head(projection=32, gru_units=16, dense_units=16, dropout=0.2, learning_rate=2e-3)
TS = Training(epochs=25, batch_size=32, patience=5)


def _heads(X, y, Xv, yv, Xt, hp, ts, seeds, reuse=True, min_delta=None):
    """One head per seed on the same data (:func:`allrep.train.head_lists.train_heads`), in a stack of as many
    slots as heads: these tests check learning and reproducibility, not the pipeline's 16-slot pools
    (tests/test_stacked.py compares stacks), and idle slots would only cost time."""
    from allrep.train.head_lists import train_heads

    tasks = [dict(X_train=X, y_train=y, X_val=Xv, y_val=yv, X_test=Xt, hp=hp, seed=int(s)) for s in seeds]
    return train_heads(tasks, ts.epochs, ts.patience, ts.batch_size, ts.min_delta if min_delta is None else min_delta,
                       reuse=reuse, slots=len(tasks))


@pytest.fixture(scope="module")
def idb2(weights_dir, data_root, tmp_path_factory):
    from allrep.data.dataset import manifest

    w = resolve_weights("mobilenetv2", "imagenet", str(weights_dir), input_size=SIZE)
    fc = FeatureCache(w, tmp_path_factory.mktemp("cache"), 32, data_root)
    items = {it.id: it for it in manifest("IDB2")}
    sp = make_splits("IDB2", "grouped", 20241018, repeats=1)
    out = {}
    for role in ("train", "val", "test"):
        part = sp[sp["role"] == role]
        v = 2 if role == "train" else 1
        out[role] = (fc.load([items[i] for i in part["id"]], v), np.repeat(part["label"].to_numpy(), v))
    return fc, out, items


def _acc(p, y):
    return float(((p > 0.5) == (y == 1)).mean())


@on_idb2
def test_shuffled_labels_give_chance(idb2):
    _, d, _ = idb2
    X, y = d["train"]
    y_shuf = np.random.default_rng(0).permutation(y)
    accs = [_acc(r["p_test"], d["test"][1]) for r in _heads(X, y_shuf, *d["val"], d["test"][0], HP, TS, [1, 2])]
    assert 0.3 <= np.mean(accs) <= 0.7, f"shuffled-label accuracy {accs} is not chance"


@on_idb2
def test_feature_cache_is_reused(idb2, monkeypatch):
    fc, _, items = idb2
    again = FeatureCache(fc.w, fc.dir.parent.parent, 32, fc.root)
    import allrep.train.features as F

    def no_backbone(w):
        raise AssertionError("backbone built although every feature is cached")

    monkeypatch.setattr(F, "build_backbone", no_backbone)
    x = again.load(list(items.values())[:5], 1)  # every image has at least view 0 cached
    assert again.backbone_calls == 0 and x.shape[0] == 5


def test_dihedral_views_are_exact():
    img = np.arange(4 * 4 * 3, dtype=np.uint8).reshape(4, 4, 3)
    vs = [view(img, v) for v in range(8)]
    assert np.array_equal(vs[0], img)
    assert len({v.tobytes() for v in vs}) == 8
    assert all(sorted(v.ravel()) == sorted(img.ravel()) for v in vs)  # no pixel lost
    j = view(img, 9, "abcdef12")
    assert j.shape == img.shape and not np.array_equal(j, view(img, 1))


@on_idb2
def test_members_learn_are_reproducible_and_a_reset_trainer_is_a_fresh_one(idb2):
    """Three members trained together on a newly built model, then again on the cached model after it trained
    others (trained weights, dropout streams and optimiser state left in it): the same probabilities and histories
    bit for bit (the ensemble model is traced once and reset across splits); each member has its own
    initialisation and data order, learns, and stops on its own validation curve."""
    _, d, _ = idb2
    args = (*d["train"], *d["val"], d["test"][0], HP, TS)
    a = _heads(*args, [11, 12, 13], reuse=False)
    _heads(*args, [5, 6, 7])  # the cached trainer, left dirty
    b = _heads(*args, [11, 12, 13])
    for x, y in zip(a, b, strict=True):
        assert np.array_equal(x["p_test"], y["p_test"]) and x["history"] == y["history"], "same seed, other result"
    assert not np.array_equal(a[0]["p_test"], a[1]["p_test"])  # own init and data order
    accs = [_acc(x["p_test"], d["test"][1]) for x in a]
    assert min(accs) >= 0.75, f"grouped-split test accuracies {accs} are not well above chance"
    from allrep.train.heads import ended_by

    for x in a:
        assert x["best_epoch"] == int(np.argmin(x["history"]["val_loss"])) + 1
        assert x["epochs_run"] == len(x["history"]["val_loss"])
        stopped_early = x["epochs_run"] - x["best_epoch"] == TS.patience
        assert ended_by(x["epochs_run"], x["best_epoch"], TS.patience) == ("early stopping" if stopped_early else "epoch cap")
        if not stopped_early:
            assert x["epochs_run"] == TS.epochs


def test_gpu_script_runs_members_on_cpu_with_one_model(weights_dir, data_root, tmp_path, monkeypatch):
    """The fine-tune script (JAX on a GPU machine) runs under TensorFlow here at a tiny size."""
    import importlib.util
    from pathlib import Path

    monkeypatch.setenv("ALLREP_SCRATCH", str(tmp_path / "scratch"))
    spec = importlib.util.spec_from_file_location("gpu_members", Path(__file__).parent.parent / "scripts" / "gpu_members.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = mod.main(["--profile", "smoke", "--dataset", "IDB1", "--backbones", "mobilenetv2", "--members", "2",
                    "--epochs", "1", "--unfreeze", "10", "--input-size", "65", "--out", str(tmp_path)])
    mem = out["backbones"]["mobilenetv2"]["members"]
    assert len(mem) == 2 and mem[0]["n"] == 22 and mem[0]["seed"] != mem[1]["seed"]
    assert mem[0]["p_test"] != mem[1]["p_test"]  # re-initialised heads, not the same member twice
    assert (tmp_path / "gpu_members.json").is_file()


def test_optimizer_reset_keeps_the_learning_rate():
    """A reset optimiser restarts its step counter and moments, not its learning rate
    (zeroing every variable once froze every member after the first)."""
    import keras

    from allrep.train.backbones import build_head, compile_model
    from allrep.train.heads import reset_optimizer

    hp = Head(projection=4, gru_units=4, dense_units=4, learning_rate=1e-3)
    model = compile_model(build_head(4, 3, hp), hp)
    model.train_on_batch(np.ones((2, 4, 3)), np.array([0, 1]))
    reset_optimizer(model.optimizer)
    assert int(keras.ops.convert_to_numpy(model.optimizer.iterations)) == 0
    assert float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)) == pytest.approx(1e-3)
    assert all(not np.any(keras.ops.convert_to_numpy(v)) for v in model.optimizer.variables
               if v.name not in ("learning_rate",))


def test_gpu_script_trains_from_scratch_with_a_profile_recipe(weights_dir, data_root, tmp_path, monkeypatch):
    import importlib.util
    from pathlib import Path

    monkeypatch.setenv("ALLREP_SCRATCH", str(tmp_path / "scratch"))
    spec = importlib.util.spec_from_file_location("gpu_members", Path(__file__).parent.parent / "scripts" / "gpu_members.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    args = ["--profile", "smoke", "--dataset", "IDB1", "--backbones", "mobilenetv2", "--members", "2",
            "--epochs", "1", "--input-size", "33", "--out", str(tmp_path)]
    with pytest.raises(SystemExit):  # argparse: one line naming the recipes
        mod.main(args + ["--scratch", "fancy"])
    out = mod.main(args + ["--scratch", "ours"])["backbones"]["mobilenetv2"]
    assert out["weights"]["kind"] == "random" and out["mode"] == "from scratch (ours)"
    mem = out["members"]
    assert len(mem) == 2 and mem[0]["n"] == 22 and mem[0]["p_test"] != mem[1]["p_test"]


@on_idb2
def test_an_images_features_do_not_depend_on_the_images_computed_with_it(idb2, tmp_path):
    """A feature map is a function of its image (and view): computed among six images, alone, or among others in
    another order, into another cache, its array is the same bit for bit. Pushed through the backbone in one batch,
    an image's map moves with its batch and its place there on CPUs with AVX2 kernels (measured: up to 1e-5 on an
    AMD EPYC), which a resumed run or a Dask worker recomputing some images would then write."""
    fc, _, items = idb2
    chosen = list(items.values())[10:16]
    a = FeatureCache(fc.w, tmp_path / "a", 4, fc.root).load(chosen, 2)
    b_cache = FeatureCache(fc.w, tmp_path / "b", 3, fc.root)
    b_cache.load(chosen[::-2], 1)  # three of them first, view 0 only, in reverse
    b = b_cache.load(chosen, 2)  # then all of them, both views: the missing ones with other company
    assert a.shape == b.shape == (12, *a.shape[1:]) and np.array_equal(a, b)
    from allrep.data.dataset import load_image
    from allrep.train.features import backbone_maps

    x = np.stack([load_image(it, SIZE, fc.root) for it in chosen])
    together = backbone_maps(b_cache.model(), x, fc.w.preprocess, 1)
    assert np.array_equal(together[::-1], backbone_maps(b_cache.model(), x[::-1], fc.w.preprocess, 1))
    assert np.array_equal(together.astype(np.float32), a[::2])  # view 0 of each image, as the cache holds it
