"""The trainer's files: datasets and lenses, scene boxes, grid files, checkpoints, outputs, events, config files."""
