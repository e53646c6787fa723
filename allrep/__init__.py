"""allrep: replication of Akter et al. 2024 (arXiv 2410.14536) on ALL-IDB.

Modules: ``data`` (manifest, verification, loading), ``provenance`` (crop-to-slide
table, overlaps, groups), ``splits``, ``audit`` (leakage and shortcuts),
``models``, ``features``, ``training``, ``tuning``, ``experiment`` (the steps),
``metrics``, ``uncertainty``, ``fusion``, ``report``, ``pipeline`` (papermill
runner and book), ``cli``.
"""

__version__ = "0.1.0"
