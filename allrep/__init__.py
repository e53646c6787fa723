"""allrep: replication of Akter et al. 2024 (arXiv 2410.14536) on ALL-IDB.

Layers, bottom up (an import only runs down this list: the import-linter contract in pyproject.toml):

* foundation: ``errors``, ``io`` (atomic writes), ``profile`` (every setting), ``repro`` (seeds, the commit,
  the environment), ``progress``, ``cache`` (where expensive work is kept);
* ``data``: ``dataset`` (manifest, verification, loading), ``provenance`` (crop-to-photograph table,
  overlaps, groups), ``splits``, ``audit`` (leakage and shortcuts);
* ``evaluate``: ``metrics`` (the one NLL, Brier, ECE per binning, bootstrap interval), ``uncertainty``,
  ``calibration``, ``scores``, ``fusion``, ``claims`` (the verdict rule), ``baselines``, ``camera``;
  below training, which stops early on and calibrates with them;
* ``train``: ``backbones``, ``features`` (cached backbone features), ``stacked`` and ``heads`` (pools of
  stacked GRU heads), ``members`` (the member engine: every head is a cached plan), ``tuning``, ``recipe``,
  ``scratch``, ``final``, ``inference``;
* ``record``: ``runs`` (which run is which), ``places`` (their folders), ``ledger`` (every test look),
  ``preregistration``, ``seal`` and ``replay``;
* ``steps``: one module per notebook step;
* ``runner``: ``registry`` (steps and their files), ``stamps``, ``context``, ``execute``, ``pipeline``,
  ``dispatch`` (serial or Dask); then ``notebook`` (the notebooks' set-up call);
* ``book``: ``pages``, ``tables`` (the one markdown writer), ``plots``; then ``cli``.
"""

__version__ = "0.1.0"


def predict(paths_or_arrays, profile: str = "paper", dataset: str = "IDB2", progress: bool = True):
    """Classify image files, folders or RGB arrays with the saved final models (:func:`allrep.train.inference.predict`).
    Research software, not a diagnostic device."""
    from allrep.train.inference import predict as _predict

    return _predict(paths_or_arrays, profile, dataset, progress)
