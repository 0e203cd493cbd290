"""Models: loading and finding decoder blocks (models), loading block by block from disk (lazy_model),
and the tiny offline demo model (demo_model)."""
