"""Pruning algorithms: pure scoring and selection (scores), SparseGPT (sparsegpt), layer
removal (structured), layer-wise sparsity allocation (allocation, influence), and the one
block-by-block driver (driver) that feeds calibration data through a model; experts of
mixture-of-experts blocks as plain matrices (experts), what an architecture cannot give a
variant (support), and the per-model statistics every variant shares (stats)."""
