"""Parts of ``reavise benchmark``: config parsing, the per-cell worker, result tables."""
