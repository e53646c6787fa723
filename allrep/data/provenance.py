"""Where every ALL-IDB2 crop comes from, and which images must stay together.

Computed once from the images by ``scripts/make_provenance.py`` and committed as
``resources/crop_provenance.csv`` (crop -> parent slide, x, y), ``resources/
slide_overlaps.csv`` (pairs of ALL-IDB1 photographs of the same smear field) and
``resources/groups.csv`` (image id -> group id). Coordinates only, never pixels.

* Crops: every ALL-IDB2 crop is an exact pixel window of a decoded ALL-IDB1
  JPEG. We find it by searching the slide's raw RGB bytes for a 16-pixel run of
  the crop's most textured row (``bytes.find``) and confirming the whole window.
* Overlaps: photographs of the same field shifted by the stage are found by
  phase correlation of grey 1/8-scale images and confirmed by the normalised
  correlation (NCC) of the overlapping part (>= 0.6; unrelated pairs measure
  <= 0.42, overlapping ones 0.63-0.99); a 2x close-up by normalised template
  matching of the 1/16-scale image inside the 1/8-scale other (>= 0.75; the one
  close-up measures 0.84).
* Groups: connected components of {byte-identical files, overlapping slides,
  crop -> parent slide, crops whose windows share cells}. Every group is
  label-pure (checked).
"""
from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

import numpy as np

from allrep.data.dataset import RESOURCES, Item, load_image, manifest

PROVENANCE = RESOURCES / "crop_provenance.csv"
OVERLAPS = RESOURCES / "slide_overlaps.csv"
GROUPS = RESOURCES / "groups.csv"


# ----------------------------------------------------------------------------- crops
def _signature(crop: np.ndarray, run: int = 16) -> tuple[int, int, bytes]:
    """(row, col, bytes) of the most textured ``run``-pixel horizontal run of ``crop``."""
    g = crop.astype(np.int32).sum(-1)
    best, pos = -1.0, (0, 0)
    for r in range(crop.shape[0] // 4, 3 * crop.shape[0] // 4, 4):
        for c in range(0, crop.shape[1] - run, run):
            v = float(np.var(g[r, c:c + run]))
            if v > best:
                best, pos = v, (r, c)
    r, c = pos
    return r, c, np.ascontiguousarray(crop[r, c:c + run]).tobytes()


def find_in_slide(crop: np.ndarray, slide: np.ndarray, sig=None) -> tuple[int, int] | None:
    """Top-left (x, y) of ``crop`` as an exact window of ``slide``, or None."""
    r, c, s = sig or _signature(crop)
    buf = slide.tobytes()
    H, W = slide.shape[:2]
    h, w = crop.shape[:2]
    start = 0
    while (i := buf.find(s, start)) != -1:
        start = i + 1
        if i % 3:
            continue
        p = i // 3
        y0, x0 = p // W - r, p % W - c
        if 0 <= y0 and 0 <= x0 and y0 + h <= H and x0 + w <= W and np.array_equal(slide[y0:y0 + h, x0:x0 + w], crop):
            return x0, y0
    return None


def match_crops(root=None, progress=print) -> list[dict]:
    """Locate every ALL-IDB2 crop in the ALL-IDB1 slides (exact, label-agnostic)."""
    crops = manifest("IDB2")
    slides = manifest("IDB1")
    sigs = {}
    arrays = {}
    for it in crops:
        arrays[it.id] = load_image(it, None, root)
        sigs[it.id] = _signature(arrays[it.id])
    found: dict[str, list[tuple[str, int, int]]] = defaultdict(list)
    for k, sl in enumerate(slides):
        img = load_image(sl, None, root)
        for it in crops:
            hit = find_in_slide(arrays[it.id], img, sigs[it.id])
            if hit:
                found[it.id].append((sl.id, *hit))
        if progress and k % 20 == 0:
            progress(f"  searched {k + 1}/{len(slides)} slides")
    rows = []
    for it in crops:
        hits = found.get(it.id, [])
        parent, x, y = hits[0] if hits else ("", -1, -1)
        rows.append(dict(crop=it.id, label=it.label, width=it.width, height=it.height, parent=parent,
                         x=x, y=y, also_in=";".join(h[0] for h in hits[1:])))
    return rows


# ----------------------------------------------------------------------------- slide overlaps
def _grey_small(item: Item, factor: int, root=None) -> np.ndarray:
    from PIL import Image

    img = load_image(item, None, root)
    h, w = img.shape[:2]
    g = Image.fromarray(img).convert("L").resize((w // factor, h // factor), Image.Resampling.BOX)
    a = np.asarray(g, dtype=np.float64)
    return a


def _ncc(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean()
    b = b - b.mean()
    d = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / d) if d > 0 else 0.0


def _shift_overlap(a: np.ndarray, b: np.ndarray) -> tuple[float, int, int, float]:
    """Best (ncc, dy, dx, overlap fraction) of b shifted against a (same shape)."""
    fa, fb = np.fft.fft2(a - a.mean()), np.fft.fft2(b - b.mean())
    r = fa * np.conj(fb)
    r /= np.abs(r) + 1e-12
    pc = np.real(np.fft.ifft2(r))
    H, W = a.shape
    dy, dx = np.unravel_index(np.argmax(pc), pc.shape)
    best = (0.0, 0, 0, 0.0)
    for sy in (dy, dy - H):
        for sx in (dx, dx - W):
            ya, yb = max(sy, 0), max(-sy, 0)
            xa, xb = max(sx, 0), max(-sx, 0)
            hh, ww = H - abs(sy), W - abs(sx)
            if hh < H // 5 or ww < W // 5:
                continue
            c = _ncc(a[ya:ya + hh, xa:xa + ww], b[yb:yb + hh, xb:xb + ww])
            if c > best[0]:
                best = (c, int(sy), int(sx), hh * ww / (H * W))
    return best


def _template_ncc(small: np.ndarray, big: np.ndarray) -> tuple[float, int, int]:
    """Max normalised correlation of ``small`` slid over ``big`` (valid positions)."""
    from scipy.signal import fftconvolve

    t = small - small.mean()
    tn = np.sqrt((t * t).sum())
    h, w = t.shape
    num = fftconvolve(big, t[::-1, ::-1], mode="valid")
    ones = np.ones_like(t)
    s1 = fftconvolve(big, ones, mode="valid")
    s2 = fftconvolve(big * big, ones, mode="valid")
    var = np.maximum(s2 - s1 * s1 / t.size, 1e-9)
    ncc = num / (np.sqrt(var) * tn + 1e-12)
    y, x = np.unravel_index(np.argmax(ncc), ncc.shape)
    return float(ncc[y, x]), int(y), int(x)


def find_overlaps(root=None, threshold: float = 0.6, closeup_threshold: float = 0.75, progress=print) -> list[dict]:
    """Pairs of ALL-IDB1 photographs that show the same smear field."""
    slides = manifest("IDB1")
    g8 = {s.id: _grey_small(s, 8, root) for s in slides}
    g16 = {s.id: _grey_small(s, 16, root) for s in slides}
    rows = []
    for i, a in enumerate(slides):
        for b in slides[i + 1:]:
            A, B = g8[a.id], g8[b.id]
            if A.shape == B.shape:
                c, dy, dx, frac = _shift_overlap(A, B)
                if c >= threshold:
                    rows.append(dict(a=a.id, b=b.id, kind="shifted", ncc=round(c, 4), dx=dx * 8, dy=dy * 8,
                                     overlap=round(frac, 3)))
                    continue
            for small, big, kind in ((a, b, "a_is_2x_closeup_of_b"), (b, a, "b_is_2x_closeup_of_a")):
                S, Bg = g16[small.id], g8[big.id]
                if S.shape[0] <= Bg.shape[0] and S.shape[1] <= Bg.shape[1] and g8[small.id].shape == Bg.shape:
                    c, y, x = _template_ncc(S, Bg)
                    if c >= closeup_threshold:
                        rows.append(dict(a=a.id, b=b.id, kind=kind, ncc=round(c, 4), dx=x * 8, dy=y * 8, overlap=0.25))
        if progress and i % 20 == 0:
            progress(f"  compared {i + 1}/{len(slides)} slides")
    return rows


# ----------------------------------------------------------------------------- groups
def _windows_overlap(a: dict, b: dict) -> bool:
    return (a["parent"] == b["parent"] and abs(int(a["x"]) - int(b["x"])) < int(a["width"])
            and abs(int(a["y"]) - int(b["y"])) < int(a["height"]))


def build_groups(prov: list[dict], overlaps: list[dict]) -> list[dict]:
    """image id -> group id: connected components of the graph whose edges join duplicates,
    overlapping photographs, each crop and its parent(s), and crops whose windows overlap."""
    import numpy as np
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    items = manifest("combined")
    index = {it.id: i for i, it in enumerate(items)}
    edges = []
    by_sha = defaultdict(list)
    for it in items:
        by_sha[it.sha256].append(it.id)
    for ids in by_sha.values():
        edges += [(ids[0], x) for x in ids[1:]]
    edges += [(o["a"], o["b"]) for o in overlaps]
    for r in prov:
        if r["parent"]:
            edges.append((r["crop"], r["parent"]))
            edges += [(r["crop"], other) for other in str(r.get("also_in") or "").split(";") if other]
    crops = [r for r in prov if r["parent"]]
    edges += [(a["crop"], b["crop"]) for i, a in enumerate(crops) for b in crops[i + 1:] if _windows_overlap(a, b)]
    rows_, cols = zip(*((index[a], index[b]) for a, b in edges)) if edges else ((), ())
    graph = coo_matrix((np.ones(len(rows_)), (rows_, cols)), shape=(len(items), len(items)))
    _, component = connected_components(graph, directed=False)
    names = {}  # groups numbered in manifest order of their first image
    return [dict(id=it.id, db=it.db, label=it.label, group=names.setdefault(component[i], f"G{len(names) + 1:03d}"))
            for i, it in enumerate(items)]


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def groups() -> dict[str, str]:
    """Committed image id -> group id."""
    return {r["id"]: r["group"] for r in read_csv(GROUPS)}


def provenance() -> list[dict]:
    return read_csv(PROVENANCE)


def overlaps() -> list[dict]:
    return read_csv(OVERLAPS)
