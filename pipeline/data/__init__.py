"""The data the workflow reads: benchmark definitions and loading, the demo's synthetic task, and
calibration sampling."""
