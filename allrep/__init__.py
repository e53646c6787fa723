"""allrep: replication of Akter et al. 2024 (arXiv 2410.14536) on ALL-IDB.

Layers, bottom up:

* data: ``data`` (manifest, verification, loading), ``provenance`` (crop-to-slide table, overlaps,
  groups), ``splits``, ``audit`` (leakage and shortcuts);
* training: ``models``, ``features`` (cached backbone features), ``stacked`` and ``training`` (pools of
  stacked GRU heads), ``members`` (the member engine: every head is a cached plan), ``tuning``,
  ``recipe``, ``scratch``, ``final``, ``inference``;
* evaluation: ``metrics`` (the one NLL, Brier, ECE per binning, bootstrap interval), ``uncertainty``,
  ``calibration``, ``camera``, ``fusion``, ``scores``, ``baselines``, ``claims``;
* running and the book: ``profile``, ``registry`` (steps and their files), ``steps`` (one module per
  notebook), ``pipeline`` (papermill runner, book), ``dispatch`` (serial or Dask), ``notebook``,
  ``tables``, ``plots``, ``cli``.
"""

__version__ = "0.1.0"


def predict(paths_or_arrays, profile: str = "paper", dataset: str = "IDB2", progress: bool = True):
    """Classify image files, folders or RGB arrays with the saved final models (:func:`allrep.train.inference.predict`).
    Research software, not a diagnostic device."""
    from allrep.train.inference import predict as _predict

    return _predict(paths_or_arrays, profile, dataset, progress)
