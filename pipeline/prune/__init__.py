"""Pruning algorithms: pure scoring and selection (scores), SparseGPT (sparsegpt), layer
removal (structured), layer-wise sparsity allocation (allocation, influence), and the one
block-by-block driver (driver) that feeds calibration data through a model."""
