"""The data the workflow reads: benchmark loading, the demo's synthetic task, and calibration
sampling."""
