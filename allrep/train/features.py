"""Augmented views and the on-disk cache of backbone feature maps.

Views (augmentation of *training* images only, applied after the split): view 0
is the image itself; views 1-7 are the other exact dihedral transforms (90
degree rotations, and their mirror images): cells have no orientation, and a
rotation of a square image loses no pixel. Views 8 and up add a mild,
deterministic colour and brightness jitter (seeded by the image checksum and
the view number) to a dihedral transform. Test and validation images are
always seen as view 0.

Pooling: ``features.pool: k`` average-pools the map k x k before caching (the
paper profile uses 2: InceptionV3's 8x8 map becomes a 16-step sequence), which
makes the GRU sequence and its projection 4x cheaper on a CPU.

Cache: the feature map of one (backbone, weights, input size, image, view) is
a pure function of those, so it is computed once and stored as float16 in
``<cache>/features/<backbone>-<weights key>-<size>[-pool<k>]-x<ALGO>/<image id>.npz``
(one file per image, holding its views), written atomically. A second run, or
another split, repeat or ensemble member, does no backbone work.

One image per backbone call (:func:`backbone_maps`, :data:`ALGO` 2): on CPUs
whose oneDNN kernels are AVX2 (measured on an AMD EPYC), an image's map
depends on the batch it shares and on its place in that batch, by up to 1e-5
(MobileNetV2, InceptionV3 and EfficientNetB3 alike), so a cache filled in
batches would depend on which images were missing when it was filled (a
resumed run, a Dask worker recomputing a quarter of them). Alone, an image's
map is a function of the image. It cost 0-14% more time than batches of 16
when measured against them on that CPU, per 32 images of each backbone; the
benchmark's backbones section reports the images per second it gives.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from allrep.cache import folder
from allrep.data.dataset import Item, data_root, load_image
from allrep.io import atomic_save_npz
from allrep.progress import bar
from allrep.train.backbones import Weights, build_backbone, preprocess


def view(img: np.ndarray, v: int, sha: str = "") -> np.ndarray:
    """View ``v`` of a square uint8 image (see module doc)."""
    d = v % 8
    out = np.rot90(img, k=d % 4, axes=(0, 1))
    if d >= 4:
        out = out[:, ::-1]
    if v >= 8:
        rng = np.random.default_rng([int(sha[:8] or "0", 16), v])
        gain = rng.uniform(0.9, 1.1, size=3)  # per-channel colour
        bright = rng.uniform(-12, 12)  # brightness, in grey levels
        out = np.clip(out.astype(np.float32) * gain + bright, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(out)


def pool_map(f: np.ndarray, k: int) -> np.ndarray:
    """Average-pool feature maps (n, h, w, c) by k x k (ceil: edge windows average what they hold)."""
    if k <= 1:
        return f
    n, h, w, c = f.shape
    H, W = -(-h // k), -(-w // k)
    out = np.zeros((n, H, W, c), dtype=np.float64)
    cnt = np.zeros((1, H, W, 1))
    for i in range(h):
        for j in range(w):
            out[:, i // k, j // k] += f[:, i, j]
            cnt[:, i // k, j // k] += 1
    return (out / cnt).astype(np.float32)


ALGO = 2  # the feature arithmetic: 2, one image per backbone call (module doc); 1 (no suffix), batches of 16


def backbone_maps(model, images: np.ndarray, mode: str, pool: int) -> np.ndarray:
    """Feature maps (n, positions, channels) as float16, the cache's precision, of uint8 ``images`` (n, s, s, 3):
    each image goes through ``model`` alone, preprocessed by ``mode`` and average-pooled ``pool`` x ``pool``. The one
    way the project turns images into features (the cache, and the final models' predictions on new images)."""
    out = []
    for x in images:
        f = pool_map(np.asarray(model.predict_on_batch(preprocess(x[None], mode))), pool)
        out.append(f.reshape(-1, f.shape[-1]).astype(np.float16))
    return np.stack(out)


class FeatureCache:
    """Backbone feature maps for one :class:`Weights`, cached per image."""

    def __init__(self, weights: Weights, cache_root: Path | str | None = None, batch_size: int = 16, root=None,
                 pool: int = 1):
        """``batch_size``: images x views read and written per progress step (each still computed alone)."""
        self.w = weights
        self.pool = int(pool)
        tag = (f"-pool{self.pool}" if self.pool > 1 else "") + f"-x{ALGO}"
        self.dir = folder("features", f"{weights.backbone}-{weights.key}-{weights.input_size}{tag}", root=cache_root)
        self.batch_size = int(batch_size)
        self.root = root
        self._model = None
        self.backbone_calls = 0  # images x views pushed through the backbone in this process
        self.seconds = 0.0

    def path(self, item: Item) -> Path:
        return self.dir / f"{item.id.replace('/', '_')}.npz"

    def _have(self, item: Item, n_views: int) -> bool:
        p = self.path(item)
        if not p.is_file():
            return False
        with np.load(p) as z:
            return z["features"].shape[0] >= n_views

    def model(self):
        if self._model is None:
            self._model = build_backbone(self.w)
        return self._model

    def ensure(self, items: list[Item], n_views: int) -> int:
        """Compute what is missing for ``items`` x views ``0..n_views-1``; returns images computed."""
        todo = [it for it in items if not self._have(it, n_views)]
        if not todo:
            return 0
        root = data_root(self.root)
        t0 = time.perf_counter()
        per_batch = max(1, self.batch_size // n_views)
        for start in bar(range(0, len(todo), per_batch), desc=f"{self.w.backbone} features", unit="batch"):
            chunk = todo[start:start + per_batch]
            x = np.stack([view(load_image(it, self.w.input_size, root), v, it.sha256)
                          for it in chunk for v in range(n_views)])
            f = backbone_maps(self.model(), x, self.w.preprocess, self.pool)
            self.backbone_calls += len(x)
            f = f.reshape(len(chunk), n_views, *f.shape[1:])
            for it, fi in zip(chunk, f):
                atomic_save_npz(self.path(it), features=fi)
        self.seconds += time.perf_counter() - t0
        return len(todo)

    def _read(self, item: Item) -> np.ndarray | None:
        p = self.path(item)
        if not p.is_file():
            return None
        with np.load(p) as z:
            return z["features"]

    def load(self, items: list[Item], views: int | list[int]) -> np.ndarray:
        """float32 array (len(items) * len(views), h*w, c), image-major; computes what is missing."""
        vs = list(range(views)) if isinstance(views, int) else list(views)
        need = max(vs) + 1
        got = [self._read(it) for it in items]  # each file opened once
        todo = [it for it, f in zip(items, got) if f is None or f.shape[0] < need]
        if todo:
            self.ensure(todo, need)
            got = [f if f is not None and f.shape[0] >= need else self._read(it) for it, f in zip(items, got)]
        return np.concatenate([f[vs] for f in got]).astype(np.float32)


def for_backbone(cfg, backbone: str) -> FeatureCache:
    """The feature cache of ``backbone`` with the weights and settings of profile ``cfg``."""
    from allrep.train.backbones import weights_for

    f = cfg.features
    return FeatureCache(weights_for(cfg, backbone), None, f.batch_size, pool=f.pool)


def split_arrays(fc: FeatureCache, split, views: int, roles=("train", "val", "test")) -> dict:
    """(X, y, ids) of one repeat: train in all ``views``, val and test as view 0."""
    from allrep.data.dataset import manifest

    by_id = {it.id: it for it in manifest("combined")}
    out = {}
    for role in roles:
        part = split[split["role"] == role]
        items = [by_id[i] for i in part["id"]]
        v = views if role == "train" else 1
        X = fc.load(items, v)
        y = np.repeat(part["label"].to_numpy(dtype=int), v)
        out[role] = (X, y, list(part["id"]))
    return out
