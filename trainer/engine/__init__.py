"""The training engine: the sparse grid, its rendering, losses, optimiser, resampling and SH basis."""
