"""Plenoxels trainer: a sparse voxel radiance field optimised with PyTorch.

Run it as ``python -m trainer`` (see ``trainer.cli``). This package never imports ``bpy``; the
Blender add-on talks to it only through the four contracts in docs/CONTRACTS.md.
"""

__version__ = "0.1.0"

# Contract versions (docs/CONTRACTS.md); bump together with the page and tests/fixtures/.
DATASET_VERSION = 1
CLI_VERSION = 1
EVENTS_VERSION = 1
GRID_VERSION = 3
