"""Measure, on this machine, what the paper profile costs; write results/benchmark.json.

    python scripts/benchmark.py [--profile paper] [--images 32]

* feature extraction: images (views) per second through each frozen backbone,
  at the profile's input size and weights, into a throw-away cache;
* head training: training samples per second of one GRU head on features of the
  backbone's (pooled, PCA-reduced) shape;
* one member end to end per backbone on ALL-IDB2's paper split with the profile's
  settings, once features exist (they are computed first if missing, not timed).

The book's reproduce page shows the file. Timings are not tests: nothing here
asserts a speed.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--profile", default="paper")
    ap.add_argument("--images", type=int, default=32)
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    from allrep import repro
    from allrep.profile import load_profile

    cfg = load_profile(a.profile)
    env = repro.setup(cfg.seed)
    from allrep.data import manifest
    from allrep.features import FeatureCache, for_backbone, split_arrays
    from allrep.models import weights_for
    from allrep.places import output_dir
    from allrep.splits import make_splits
    from allrep.training import train_member

    out = dict(profile=cfg.name, environment=env, when=time.strftime("%Y-%m-%d %H:%M"), backbones={})
    items = manifest("IDB2")[: a.images]
    views = cfg.features.views
    for bb in cfg.use_backbones:
        w = weights_for(cfg, bb)
        with tempfile.TemporaryDirectory() as tmp:
            fc = FeatureCache(w, tmp, cfg.features.batch_size, pool=cfg.features.pool)
            fc.model()  # build outside the timing
            t0 = time.perf_counter()
            fc.ensure(items, views)
            dt = time.perf_counter() - t0
        feat_rate = len(items) * views / dt
        # one member end to end on the real paper split (features from the main cache)
        fc = for_backbone(cfg, bb)
        s = cfg.splits
        split = make_splits("IDB2", "paper", cfg.seed, s.test_fraction, s.val_fraction)
        arr = split_arrays(fc, split, views)
        t0 = time.perf_counter()  # timing only: the profile's default head (accuracy belongs to the pipeline)
        res = train_member(*arr["train"][:2], *arr["val"][:2], arr["test"][0], cfg.head, cfg.training, seed=1)
        member_s = time.perf_counter() - t0
        out["backbones"][bb] = dict(
            weights=w.kind, input_size=w.input_size, feature_images_per_second=round(feat_rate, 1),
            all_368_images_seconds_estimate=round(368 * views / feat_rate, 0),
            head_samples_per_second=round(res["epochs_run"] * len(arr["train"][0]) / res["train_seconds"], 0),
            member_seconds=round(member_s, 1), member_epochs=res["epochs_run"],
            sequence=list(arr["train"][0].shape[1:]))
        print(bb, out["backbones"][bb], flush=True)
    out["predict"] = _predict_speed(cfg)
    print("predict", out["predict"], flush=True)
    dest = Path(a.out) if a.out else output_dir(cfg) / "benchmark.json"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(out, indent=1, default=str) + "\n")
    print(f"wrote {dest}")


def _predict_speed(cfg, n: int = 10, dataset: str = "IDB2") -> dict | None:
    """`allrep predict` on n ALL-IDB2 files: seconds with model loading (a fresh Predictor) and without
    (a loaded one), when the final models exist (step 70 or `allrep train-final` builds them)."""
    from allrep.data import data_root, manifest
    from allrep.errors import AllrepError
    from allrep.inference import Predictor, predict

    paths = [data_root() / it.relpath() for it in manifest(dataset)[:n]]
    t0 = time.perf_counter()
    try:
        pr = Predictor(cfg, dataset)
    except AllrepError as e:
        print(f"predict not measured: {e}")
        return None
    predict(paths, cfg.name, dataset, progress=False, predictor=pr)
    with_loading = time.perf_counter() - t0
    t0 = time.perf_counter()
    predict(paths, cfg.name, dataset, progress=False, predictor=pr)
    without = time.perf_counter() - t0
    return dict(images=n, dataset=dataset, seconds_with_model_loading=round(with_loading, 1),
                seconds_models_loaded=round(without, 1), images_per_second_loaded=round(n / without, 2))


if __name__ == "__main__":
    main()
