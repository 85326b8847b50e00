"""Training losses: photometric MSE, total variation, Cauchy sparsity, beta (opacity) loss.

The caller passes density in scene units (see trainer.config), the frame of the Plenoxels code, so
that the paper's weights apply to a box of any size.
"""

from __future__ import annotations

import torch

from trainer.engine.grid import CORNERS, SparseGrid, flatten

# +x, +y, +z neighbour offsets
AXES = CORNERS[[4, 2, 1]]


def mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return torch.mean((pred - target) ** 2)


def cauchy_sparsity(sigma_grid: torch.Tensor) -> torch.Tensor:
    """sum log(1 + 2 sigma^2) over samples (sigma in scene units); the caller applies the weight."""
    return torch.log1p(2.0 * sigma_grid * sigma_grid).sum()


def beta_loss(opacity: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    """Mean of log(a) + log(1 - a): lowest at a in {0, 1}, so it pushes rays to be clear or opaque."""
    a = opacity.clamp(eps, 1.0 - eps)
    return torch.mean(torch.log(a) + torch.log1p(-a))


def tv_neighbours(grid: SparseGrid, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of the +x, +y, +z neighbours of `rows` [M] -> ([M, 3] row ids, [M, 3] bool present)."""
    coords = grid.coords()[rows] if rows.numel() else torch.zeros((0, 3), dtype=torch.int64, device=grid.device)
    nb = coords[:, None, :] + AXES.to(coords.device)[None]  # [M, 3, 3]
    res = torch.tensor(grid.resolution, device=coords.device)
    inside = (nb < res).all(-1)
    flat = flatten(torch.minimum(nb, res - 1), grid.resolution)
    nb_rows = grid.links.reshape(-1)[flat].long()
    present = inside & (nb_rows >= 0)
    return torch.where(present, nb_rows, rows[:, None].expand_as(nb_rows)), present


def total_variation(
    values: torch.Tensor, rows: torch.Tensor, nb_rows: torch.Tensor, present: torch.Tensor, eps: float = 1e-8
) -> torch.Tensor:
    """Sum over rows and channels of sqrt(dx^2 + dy^2 + dz^2 + eps), d = neighbour - self.

    values [N, C]; a missing neighbour (empty or outside) contributes no difference, so the border of
    the active set is not pulled towards zero. A sum over the sampled rows, not a mean (as in svox2):
    each sampled voxel feels the weight itself, however many voxels the grid holds, so one weight
    keeps its strength against the photometric loss as pruning and upsampling change the count.
    """
    own = values[rows]  # [M, C]
    diffs = values[nb_rows] - own[:, None, :]  # [M, 3, C]
    diffs = diffs * present[:, :, None].to(values.dtype)
    return torch.sqrt((diffs * diffs).sum(1) + eps).sum()
