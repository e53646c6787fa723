"""ALL-IDB: the committed manifest, verification, and image loading.

The images are licensed for research on request and are never committed: the
package ships only ``resources/manifest.csv`` (database, file, label, width,
height, sha256 of every image and ``.xyc`` file). Users point
``ALLREP_DATA`` (or ``--data``) at their copy laid out as the official
distribution unpacks::

    ALL_IDB1/im/ImXXX_Y.jpg   108 smear photographs (Y=1: ALL patient)
    ALL_IDB1/xyc/ImXXX_Y.xyc  blast centroids, one "x<TAB>y" per line
    ALL_IDB2/img/ImXXX_Y.tif  260 single-cell crops (Y=1: centred cell is a blast)

Image ids are ``"<db>/<stem>"``, e.g. ``"IDB1/Im001_1"`` and ``"IDB2/Im223_0"``.

Resizing (documented choice, see the deviations page): every image is resized
to the square backbone input with Pillow's antialiased bicubic filter, *without*
preserving aspect ratio. ALL-IDB1 photographs are 4:3 or 5:4 (one 1226x652),
so cells are squeezed horizontally by 20-45%; ALL-IDB2's ten edge crops smaller
than 257x257 are stretched to the square. We do not pad or crop: padding would
add a size cue (the camera, hence the label, is readable from the aspect), and
centre-cropping would drop blasts near the edge of a photograph. JPEG photographs
are decoded with ``Image.draft`` at the largest power-of-two reduction that is
still at least twice the target size, so no full-resolution float array of a
slide is ever held.
"""
from __future__ import annotations

import csv
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from allrep.errors import AllrepError

DATASETS = ("IDB1", "IDB2", "combined")
SUBDIRS = {"IDB1": ("ALL_IDB1", "im", ".jpg"), "IDB2": ("ALL_IDB2", "img", ".tif")}
XYC_DIR = ("ALL_IDB1", "xyc", ".xyc")
ENV_VAR = "ALLREP_DATA"
REQUEST_URL = "https://scotti.di.unimi.it/all/"
RESOURCES = Path(__file__).parent.parent / "resources"
MANIFEST = RESOURCES / "manifest.csv"
MANIFEST_FIELDS = ("db", "file", "kind", "label", "width", "height", "sha256")


@dataclass(frozen=True)
class Item:
    """One image of the manifest."""

    db: str  # "IDB1" or "IDB2"
    file: str  # file name, e.g. "Im001_1.jpg"
    label: int  # 1 = ALL (blast), 0 = healthy
    width: int
    height: int
    sha256: str

    @property
    def id(self) -> str:
        return f"{self.db}/{Path(self.file).stem}"

    def relpath(self) -> Path:
        top, sub, _ = SUBDIRS[self.db]
        return Path(top) / sub / self.file


def label_from_name(name: str) -> int:
    """``ImXXX_1.*`` -> 1 (ALL), ``ImXXX_0.*`` -> 0 (healthy)."""
    stem = Path(name).stem
    suffix = stem.rsplit("_", 1)[-1]
    if suffix not in ("0", "1"):
        raise AllrepError(f"cannot read a label from file name {name!r} (expected ImXXX_0 or ImXXX_1)")
    return int(suffix)


def sha256_file(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


# ----------------------------------------------------------------------------- data path
def data_root(path: str | os.PathLike | None = None, check: bool = True) -> Path:
    """The ALL-IDB folder: ``path``, else ``$ALLREP_DATA``; checked to exist."""
    raw = path if path is not None else os.environ.get(ENV_VAR)
    if not raw:
        raise AllrepError(
            f"no ALL-IDB folder given: set {ENV_VAR}=/path/to/ALL-IDB (or pass --data); "
            f"the data is requested from {REQUEST_URL}"
        )
    root = Path(raw).expanduser()
    if check and not root.is_dir():
        raise AllrepError(
            f"ALL-IDB folder not found: {root} (set {ENV_VAR} or --data to your copy, laid out as "
            f"ALL_IDB1/im, ALL_IDB1/xyc, ALL_IDB2/img; the data is requested from {REQUEST_URL})"
        )
    return root


# ----------------------------------------------------------------------------- manifest
def _read_manifest_rows() -> list[dict]:
    with open(MANIFEST, newline="") as f:
        return list(csv.DictReader(f))


def manifest(dataset: str = "combined") -> list[Item]:
    """The images of ``dataset`` ("IDB1", "IDB2" or "combined"), in manifest order."""
    check_dataset(dataset)
    items = [
        Item(r["db"], r["file"], int(r["label"]), int(r["width"]), int(r["height"]), r["sha256"])
        for r in _read_manifest_rows()
        if r["kind"] == "image"
    ]
    if dataset != "combined":
        items = [it for it in items if it.db == dataset]
    return items


def check_dataset(dataset: str) -> str:
    if dataset not in DATASETS:
        raise AllrepError(f"unknown dataset {dataset!r}: choose one of {', '.join(DATASETS)}")
    return dataset


def expected_files() -> dict[str, str]:
    """Relative path -> sha256 for every file the manifest lists (images and .xyc)."""
    out = {}
    for r in _read_manifest_rows():
        if r["kind"] == "image":
            top, sub, _ = SUBDIRS[r["db"]]
        else:
            top, sub, _ = XYC_DIR
        out[str(Path(top) / sub / r["file"])] = r["sha256"]
    return out


# ----------------------------------------------------------------------------- verification
@dataclass
class VerifyReport:
    root: Path
    missing: list[str]
    extra: list[str]
    mismatched: list[str]
    unreadable: list[str]
    counts: dict[str, dict[int, int]]

    @property
    def ok(self) -> bool:
        return not (self.missing or self.extra or self.mismatched or self.unreadable)

    def lines(self) -> list[str]:
        if self.ok:
            n = sum(sum(c.values()) for c in self.counts.values())
            parts = [f"{db}: {c[1]} ALL / {c[0]} healthy" for db, c in self.counts.items()]
            return [f"OK: {n} images verified in {self.root} ({'; '.join(parts)})"]
        out = [f"FAILED: {self.root} does not match the ALL-IDB manifest"]
        for what, names in (("missing", self.missing), ("extra", self.extra),
                            ("checksum mismatch", self.mismatched), ("unreadable", self.unreadable)):
            out += [f"  {what}: {n}" for n in names]
        return out


def verify(path: str | os.PathLike | None = None, decode: bool = True) -> VerifyReport:
    """Check a folder against the manifest: missing, extra, mismatched, unreadable files.

    A file renamed to the other label shows as one missing and one extra name
    (and, if it replaced the other label's file, as a checksum mismatch).
    """
    root = data_root(path)
    expected = expected_files()
    present = set()
    for top, sub, ext in list(SUBDIRS.values()) + [XYC_DIR]:
        d = root / top / sub
        if d.is_dir():
            present |= {str(Path(top) / sub / p.name) for p in d.iterdir() if p.is_file() and not p.name.startswith(".")}
    missing = sorted(set(expected) - present)
    extra = sorted(present - set(expected))
    mismatched, unreadable = [], []
    for rel in sorted(set(expected) & present):
        if sha256_file(root / rel) != expected[rel]:
            mismatched.append(rel)
    if decode:  # a file with the official bytes decodes; only changed files are decoded
        for rel in mismatched:
            if rel.endswith((".jpg", ".tif")):
                try:
                    open_rgb(root / rel, None)
                except AllrepError:
                    unreadable.append(rel)
    counts: dict[str, dict[int, int]] = {}
    for it in manifest("combined"):
        if str(it.relpath()) in present:
            c = counts.setdefault(it.db, {0: 0, 1: 0})
            c[it.label] += 1
    return VerifyReport(root, missing, extra, mismatched, unreadable, counts)


def require_verified(path=None, quick: bool = True) -> Path:
    """Raise AllrepError unless every image the manifest lists is present (and, unless
    ``quick``, byte-identical). ``quick`` checks names and sizes only."""
    root = data_root(path)
    if quick:
        missing = [str(it.relpath()) for it in manifest() if not (root / it.relpath()).is_file()]
        if missing:
            raise AllrepError(f"{len(missing)} ALL-IDB images missing under {root}, e.g. {missing[0]}; "
                              f"run `allrep data verify {root}` for the full list")
        return root
    rep = verify(root)
    if not rep.ok:
        raise AllrepError("; ".join(rep.lines()[1:4]) + f" (run `allrep data verify {root}`)")
    return root


# ----------------------------------------------------------------------------- loading
def open_rgb(path: Path, size: int | None):
    """Decode ``path`` to an RGB uint8 array, resized to ``size`` x ``size`` if given."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            if size is not None and im.format == "JPEG":
                im.draft("RGB", (2 * size, 2 * size))  # DCT-domain downscale, never below 2x target
            im = im.convert("RGB")
            if size is not None:
                im = im.resize((size, size), Image.Resampling.BICUBIC, reducing_gap=3.0)
            return np.asarray(im, dtype=np.uint8)
    except (OSError, UnidentifiedImageError, SyntaxError) as e:
        raise AllrepError(f"unreadable image {path}: {e.__class__.__name__}: {e}") from None


def load_image(item: Item, size: int | None = None, root=None) -> np.ndarray:
    """One image as uint8 (H, W, 3); full resolution when ``size`` is None."""
    root = data_root(root)
    path = root / item.relpath()
    if not path.is_file():
        raise AllrepError(f"missing image {path} (run `allrep data verify {root}`)")
    return open_rgb(path, size)


def load_images(items: list[Item], size: int, root=None) -> np.ndarray:
    """Images resized to ``size`` x ``size`` as one uint8 array (N, size, size, 3)."""
    root = data_root(root)
    out = np.empty((len(items), size, size, 3), dtype=np.uint8)
    for i, it in enumerate(items):
        out[i] = load_image(it, size, root)
    return out
