"""Evaluation: metrics, uncertainty, calibration, scores, fusion, claims, baselines, camera."""
