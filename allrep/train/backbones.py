"""The three CNN-GRU hybrids, their ImageNet weights and preprocessing.

A hybrid is a ``keras.applications`` backbone without its top; its last feature
map (h x w x c) is read as a sequence of h*w positions (row-major) and fed to
a GRU head: optional per-position projection -> GRU -> dropout -> dense ->
dropout -> 2-way softmax. The head is one function, :func:`build_head`, used
both on cached features (frozen backbone) and inside the full model
(fine-tuning), so the two modes train the same architecture.

Only ``keras`` and ``keras.ops`` are used here: TensorFlow (the default) and JAX
(a GPU machine without TensorFlow) both run it.

Weights: ``imagenet`` means the official Keras download (cached in
``$KERAS_HOME/models``), unless ``ALLREP_WEIGHTS_DIR`` (or the profile's
``weights_dir``) points at a folder built by ``allrep weights build``
(:mod:`allrep.train.imagenet_files`), whose ``manifest.yaml`` names a local file, its preprocessing and its
input size; a backbone the manifest lists as ``null`` (EfficientNetB3) then
starts from random initialisation, and says so. ``none`` is random
initialisation. Preprocessing always follows the weights actually loaded.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from allrep.errors import AllrepError
from allrep.profile import Head

BACKBONES = {
    # name: (keras.applications class, native input size, native preprocessing)
    "inceptionv3": ("InceptionV3", 299, "tf"),
    "efficientnetb3": ("EfficientNetB3", 300, "raw"),  # EfficientNet rescales inside the model
    "mobilenetv2": ("MobileNetV2", 224, "tf"),
}
WEIGHTS_ENV = "ALLREP_WEIGHTS_DIR"
IMAGENET_TOOL = "allrep weights build"  # the project's offline builder (allrep.train.imagenet_files)


def check_backbone(name: str) -> str:
    if name not in BACKBONES:
        raise AllrepError(f"unknown backbone {name!r}: choose one of {', '.join(BACKBONES)}")
    return name


# ----------------------------------------------------------------------------- weights
@dataclass(frozen=True)
class Weights:
    """What a backbone actually starts from."""

    backbone: str
    kind: str  # "imagenet-official", "imagenet-file" or "random"
    path: str | None
    preprocess: str  # "tf" (x/127.5-1), "torch" (ImageNet mean/std), "raw" (0..255)
    input_size: int
    source: str
    sha256: str | None = None
    seed: int | None = None  # initialisation seed, for random weights

    @property
    def key(self) -> str:
        """Short id used in cache keys."""
        if self.kind == "random":
            return f"random-s{self.seed}"
        if self.kind == "imagenet-file":
            return f"file-{(self.sha256 or '')[:12]}"
        return "imagenet-official"

    def to_dict(self) -> dict:
        """The record results carry: a file is named by its name and sha256, never by a machine's path."""
        d = asdict(self)
        if self.kind == "imagenet-file":
            d["path"] = Path(self.path).name
        return d


def _read_weights_manifest(folder: Path) -> dict:
    import yaml

    mf = folder / "manifest.yaml"
    if not mf.is_file():
        raise AllrepError(f"no manifest.yaml in weights folder {folder}: build it with {IMAGENET_TOOL} {folder}")
    return yaml.safe_load(mf.read_text()) or {}


def resolve_weights(backbone: str, requested: str = "imagenet", weights_dir: str | None = None,
                    input_size: int | None = None, seed: int = 0, random_if_unavailable: bool = False) -> Weights:
    """Decide which weights ``backbone`` loads, with their preprocessing and input size.

    ``imagenet``: the official Keras download (the default, online), or with an offline weights folder
    (``weights_dir`` / ``$ALLREP_WEIGHTS_DIR``) that folder's file. A folder without a file for the
    backbone is an error that says how to get one, unless ``random_if_unavailable`` (the profile's
    explicit permission): then random initialisation, and the record says so."""
    check_backbone(backbone)
    _, native, native_pre = BACKBONES[backbone]
    weights_dir = weights_dir or os.environ.get(WEIGHTS_ENV) or None
    if requested in ("none", None, "random"):
        return Weights(backbone, "random", None, native_pre, input_size or native, "random initialisation", seed=seed)
    if requested != "imagenet":
        raise AllrepError(f"unknown weights {requested!r} for {backbone}: use 'imagenet' or 'none'")
    if weights_dir:
        folder = Path(weights_dir)
        entry = _read_weights_manifest(folder).get(backbone)
        if entry is None:
            if not random_if_unavailable:
                raise AllrepError(
                    f"no ImageNet file for {backbone} in the offline weights folder {folder.name}/ "
                    f"({WEIGHTS_ENV}): add one to its manifest.yaml, or unset {WEIGHTS_ENV} to download the official "
                    f"Keras weights (internet), or allow random weights explicitly in the profile "
                    f"(backbones.{backbone}.random_if_unavailable: true)")
            return Weights(backbone, "random", None, native_pre, input_size or native,
                           f"random initialisation (no offline ImageNet file for {backbone}; "
                           f"the profile allows random_if_unavailable)", seed=seed)
        path = folder / entry["path"]
        if not path.is_file():
            raise AllrepError(f"ImageNet file for {backbone} missing: {path} (rebuild with {IMAGENET_TOOL} {folder})")
        return Weights(backbone, "imagenet-file", str(path), entry["preprocess"],
                       int(input_size or entry.get("input_size") or native), entry.get("source", str(path)),
                       entry.get("sha256"))
    return Weights(backbone, "imagenet-official", "imagenet", native_pre, input_size or native,
                   "keras.applications official ImageNet weights")


def weights_for(cfg, backbone: str) -> Weights:
    """The weights ``backbone`` starts from under profile ``cfg``."""
    spec = cfg.backbone(backbone)
    return resolve_weights(backbone, spec.weights, cfg.weights_dir, spec.input_size, seed=cfg.seed,
                           random_if_unavailable=spec.random_if_unavailable)


# ----------------------------------------------------------------------------- preprocessing
_TORCH_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
_TORCH_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def preprocess(x_uint8: np.ndarray, mode: str) -> np.ndarray:
    """uint8 RGB (..., 3) -> float32 as the loaded weights expect."""
    x = np.asarray(x_uint8, dtype=np.float32)
    if mode == "tf":
        return x / 127.5 - 1.0
    if mode == "torch":
        return (x / 255.0 - _TORCH_MEAN) / _TORCH_STD
    if mode == "raw":
        return x
    raise AllrepError(f"unknown preprocessing mode {mode!r}")


# ----------------------------------------------------------------------------- models
def build_backbone(w: Weights):
    """The ``keras.applications`` backbone without top, with ``w`` loaded."""
    import keras

    cls = getattr(keras.applications, BACKBONES[w.backbone][0])
    shape = (w.input_size, w.input_size, 3)
    if w.kind == "random":
        keras.utils.set_random_seed(int(w.seed or 0))
        return cls(include_top=False, weights=None, input_shape=shape)
    if w.kind == "imagenet-file":
        return cls(include_top=False, weights=w.path, input_shape=shape)
    try:
        return cls(include_top=False, weights="imagenet", input_shape=shape)
    except Exception as e:  # the download failed (offline machine, proxy, ...)
        raise AllrepError(
            f"could not get the official ImageNet weights for {w.backbone} ({e.__class__.__name__}: {e}); "
            f"offline, build local files with {IMAGENET_TOOL} DEST and set {WEIGHTS_ENV}=DEST"
        ) from None


# Short sequences (the recipe's 4 or 9 positions) run the GRU unrolled: the same arithmetic as the
# symbolic loop, without a while-loop per head per step, which dominates small heads on a CPU.
UNROLL, MAX_UNROLL = True, 32


def _rate_dropout():
    import keras
    from keras import ops

    @keras.saving.register_keras_serializable(package="allrep")
    class RateDropout(keras.layers.Layer):
        """Dropout whose rate is a (non-trainable) variable, so one traced model serves any rate
        (heads trained together with tuned rates, :class:`allrep.train.heads.HeadsTrainer`).
        keras' ``Dropout`` bakes its rate into the graph as a Python float."""

        def __init__(self, rate=0.0, **kw):
            super().__init__(**kw)
            self.init_rate = float(rate)
            self.seed_generator = keras.random.SeedGenerator()

        def build(self, input_shape):
            self.rate = self.add_weight(shape=(), initializer=keras.initializers.Constant(self.init_rate),
                                        trainable=False, name="rate")

        def call(self, x, training=False):
            if not training:
                return x
            keep = 1.0 - ops.cast(self.rate, x.dtype)
            mask = keras.random.uniform(ops.shape(x), seed=self.seed_generator) < keep
            return ops.where(mask, x / keep, ops.zeros_like(x))

        def get_config(self):
            return {**super().get_config(), "rate": self.init_rate}

    return RateDropout


RateDropout = None  # created on first use (keras is imported lazily)


def rate_dropout(rate: float, name: str):
    global RateDropout
    if RateDropout is None:
        RateDropout = _rate_dropout()
    return RateDropout(rate, name=name)


def build_head(seq_len: int, channels: int, hp: Head, name: str = "gru_head"):
    """GRU head on a sequence of ``seq_len`` feature vectors of size ``channels``."""
    import keras
    from keras import layers

    inp = keras.Input((seq_len, channels), name="features")
    x = inp
    if hp.projection:
        x = layers.Dense(hp.projection, activation="relu", name="projection")(x)
    x = layers.GRU(hp.gru_units, name="gru", unroll=UNROLL and seq_len <= MAX_UNROLL)(x)
    x = rate_dropout(hp.dropout, "dropout_1")(x)
    x = layers.Dense(hp.dense_units, activation="relu", name="dense")(x)
    x = rate_dropout(hp.dropout, "dropout_2")(x)
    out = layers.Dense(2, activation="softmax", name="probs")(x)
    return keras.Model(inp, out, name=name)


def build_hybrid(w: Weights, hp: Head, trainable_backbone: bool = False):
    """Full hybrid: preprocessed image -> backbone -> (h*w, c) sequence -> GRU head."""
    import keras
    from keras import layers

    base = build_backbone(w)
    base.trainable = trainable_backbone
    h, wd, c = (int(d) for d in base.output_shape[1:])
    inp = keras.Input((w.input_size, w.input_size, 3), name="image")
    x = base(inp, training=False if not trainable_backbone else None)
    x = layers.Reshape((h * wd, c), name="as_sequence")(x)
    out = build_head(h * wd, c, hp)(x)
    return keras.Model(inp, out, name=f"{w.backbone}_gru")


def compile_model(model, hp: Head):
    import keras

    model.compile(optimizer=keras.optimizers.AdamW(hp.learning_rate, weight_decay=hp.weight_decay),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def weights_table(meta: dict):
    """Which weights each backbone used, per dataset, from the ensembles' records."""
    import pandas as pd

    rows = []
    for m in meta.values():
        w = m["weights"]
        rows.append(dict(backbone=m["backbone"], dataset=m["dataset"], weights=w["kind"], source=w["source"],
                         sha256=(w.get("sha256") or "")[:16], input_size=w["input_size"], preprocess=w["preprocess"],
                         hyperparameters=m.get("hp_source", "")))
    return pd.DataFrame(rows).sort_values(["backbone", "dataset"], ignore_index=True) if rows else pd.DataFrame()
