"""The data: the manifest and loading, provenance, splits, audits."""
