"""Classify a user's own blood-smear images with the fused ensemble and its uncertainty.

``allrep predict PATH... [--profile paper] [--dataset IDB2] [--out FILE.csv|FILE.json]`` and, from
Python, :func:`predict`. For each image: p(ALL) of each backbone's ensemble (temperature-scaled), the
fused p(ALL) (the sum rule over the backbones, scaled by its own temperature), the predicted class,
the predictive entropy and mutual information of the fused members, and a refer flag (the fused
log-odds confidence, |logit p| / T, is below the threshold fitted on validation for the profile's
referral coverage).

Research software, not a diagnostic device.

Bad input never stops the others: an unreadable, truncated, non-image, grayscale or tiny file is
reported on one line with its reason and skipped (:class:`BadImage`).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from allrep.errors import AllrepError
from allrep.evaluate.calibration import log_odds_confidence, scale
from allrep.evaluate.metrics import predict_label
from allrep.evaluate.uncertainty import binary_entropy

SUFFIXES = {".jpg", ".jpeg", ".png", ".tif", ".tiff"}
MIN_SIDE = 64  # pixels: a smaller image holds no cell at the magnification ALL-IDB was taken at


@dataclass
class BadImage:
    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


def collect(paths) -> tuple[list[Path], list[BadImage]]:
    """Files to classify from files and folders (folders: their JPEG, PNG and TIFF files, sorted)."""
    files, bad = [], []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.suffix.lower() in SUFFIXES and f.is_file())
            if not found:
                bad.append(BadImage(str(p), "folder holds no JPEG, PNG or TIFF image"))
            files += found
        elif p.is_file():
            files.append(p)
        else:
            bad.append(BadImage(str(p), "no such file or folder"))
    return files, bad


def check_image(path: Path) -> str | None:
    """Why ``path`` cannot be classified, or None: not an image, truncated, grayscale or tiny."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            mode, size = im.mode, im.size
            im.load()  # decodes every byte: a truncated file fails here
    except UnidentifiedImageError:
        return "not an image PIL can read"
    except (OSError, SyntaxError, ValueError) as e:
        return f"unreadable or truncated ({e.__class__.__name__}: {e})"
    if mode in ("1", "L", "LA", "I", "I;16", "F"):
        return f"grayscale ({mode}): the models need a colour (RGB) stain image"
    if min(size) < MIN_SIDE:
        return f"too small ({size[0]}x{size[1]} px; at least {MIN_SIDE} px a side)"
    return None


class Predictor:
    """The saved final models of one (profile, dataset), loaded once (:func:`allrep.train.final.load_manifest`)."""

    def __init__(self, cfg, dataset: str):
        import keras

        from allrep.train.backbones import build_backbone, rate_dropout, weights_for
        from allrep.train.final import load_manifest, model_dir
        from allrep.train.heads import Reduction

        rate_dropout(0.0, "register")  # registers the custom layer the saved heads use
        self.cfg, self.dataset = cfg, dataset
        self.m = load_manifest(cfg, dataset)
        folder = model_dir(cfg, dataset)
        self.parts = {}
        for bb, rec in self.m["backbones"].items():
            w = weights_for(cfg, bb)
            if w.to_dict() != rec["weights"]:
                raise AllrepError(f"{bb}: the weights available now ({w.source}) are not the ones the final models were "
                                  f"trained on; rebuild with `allrep train-final --profile {cfg.name} --dataset {dataset}`")
            with np.load(folder / bb / "reduction.npz") as z:
                red = Reduction.from_state({k: z[k] for k in z.files})
            heads = [keras.saving.load_model(folder / bb / f"member_{i}.keras") for i in range(self.m["members"])]
            self.parts[bb] = dict(w=w, backbone=build_backbone(w), reduction=red, heads=heads, T=rec["temperature"])

    def member_probs(self, images: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Per backbone, (members, n) p(ALL) for the images, exactly as the pipeline computes features
        (view 0, the backbone's preprocessing, pooling, float16 cache precision, the saved reduction)."""
        from allrep.train.features import backbone_maps

        out = {}
        for bb, part in self.parts.items():
            f = backbone_maps(part["backbone"], images[bb], part["w"].preprocess, self.cfg.features.pool)
            f = f.astype(np.float32)
            X = part["reduction"](f)
            out[bb] = np.stack([np.asarray(h.predict_on_batch(X))[:, 1].astype(np.float64) for h in part["heads"]])
        return out

    def load(self, path: Path) -> dict[str, np.ndarray]:
        from allrep.data.dataset import open_rgb

        return {bb: open_rgb(path, part["w"].input_size)[None] for bb, part in self.parts.items()}

    def frame(self, names, probs: dict[str, np.ndarray]) -> pd.DataFrame:
        m, rows = self.m, []
        bbs = list(probs)
        n = len(names)
        for i in range(n):
            row = dict(image=names[i])
            scaled = {}
            for bb in bbs:
                scaled[bb] = float(scale(probs[bb][:, i].mean(), self.parts[bb]["T"]))
                row[f"p_all_{bb}"] = round(scaled[bb], 6)
            members = np.concatenate([probs[bb][:, i] for bb in bbs])
            fused_raw = float(np.mean([probs[bb][:, i].mean() for bb in bbs]))
            fused = float(scale(fused_raw, m["fused_temperature"]))
            ent = float(binary_entropy(np.array([fused_raw]))[0])
            mi = ent - float(np.mean(binary_entropy(members)))
            row.update(p_all_fused=round(fused, 6), predicted="ALL" if predict_label([fused])[0] else "healthy",
                       entropy=round(ent, 6), mutual_information=round(max(mi, 0.0), 6),
                       refer=bool(log_odds_confidence(fused_raw, m["fused_temperature"]) < m["referral_threshold"]))
            rows.append(row)
        return pd.DataFrame(rows)


def predict(paths_or_arrays, profile: str = "paper", dataset: str = "IDB2", progress: bool = True,
            predictor: Predictor | None = None) -> pd.DataFrame:
    """Classify files, folders or RGB uint8 arrays (H, W, 3). Returns one row per image that could be
    classified; images that could not are in ``.attrs["failed"]`` (a list of :class:`BadImage`)."""
    from allrep.profile import load_profile
    from allrep.progress import bar

    cfg = load_profile(profile)
    arrays = [a for a in paths_or_arrays if isinstance(a, np.ndarray)]
    files, bad = collect([p for p in paths_or_arrays if not isinstance(p, np.ndarray)])  # the paths first:
    readable = []  # a mistyped path is named as such, whether or not final models exist
    for path in files:
        why = check_image(path)
        if why:
            bad.append(BadImage(str(path), why))
        else:
            readable.append(path)
    if not readable and not arrays:
        out = pd.DataFrame()
        out.attrs["failed"] = bad
        return out
    pr = predictor or Predictor(cfg, dataset)
    frames, names = [], []
    for path in bar(readable, desc="images", unit="image", disable=not progress or len(readable) < 2):
        frames.append(pr.member_probs(pr.load(path)))
        names.append(str(path))
    for i, a in enumerate(arrays):
        from PIL import Image

        if a.ndim != 3 or a.shape[-1] != 3 or min(a.shape[:2]) < MIN_SIDE:
            bad.append(BadImage(f"array {i}", f"expected an RGB array (H, W, 3) of at least {MIN_SIDE} px, got {a.shape}"))
            continue
        im = Image.fromarray(np.asarray(a, dtype=np.uint8))
        x = {bb: np.asarray(im.resize((p["w"].input_size,) * 2, Image.Resampling.BICUBIC, reducing_gap=3.0))[None]
             for bb, p in pr.parts.items()}
        frames.append(pr.member_probs(x))
        names.append(f"array {i}")
    if frames:
        probs = {bb: np.concatenate([f[bb] for f in frames], axis=1) for bb in frames[0]}
        out = pr.frame(names, probs)
    else:
        out = pd.DataFrame()
    out.attrs["failed"] = bad
    return out
