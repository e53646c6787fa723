"""allrep: replication of Akter et al. 2024 (arXiv 2410.14536) on ALL-IDB.

Modules: ``data`` (manifest, verification, loading), ``provenance`` (crop-to-slide
table, overlaps, groups), ``splits``, ``audit`` (leakage and shortcuts),
``models``, ``features``, ``training``, ``tuning``, ``experiment`` (the steps),
``metrics``, ``uncertainty``, ``fusion``, ``report``, ``pipeline`` (papermill
runner and book), ``cli``.
"""

__version__ = "0.1.0"


def predict(paths_or_arrays, profile: str = "paper", dataset: str = "IDB2", progress: bool = True):
    """Classify image files, folders or RGB arrays with the saved final models (:func:`allrep.inference.predict`).
    Research software, not a diagnostic device."""
    from .inference import predict as _predict

    return _predict(paths_or_arrays, profile, dataset, progress)
