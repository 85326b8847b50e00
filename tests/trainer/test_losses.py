"""Regularisers: gradients against autograd-free finite differences and hand-derived values."""

from __future__ import annotations

import math

import torch

from trainer.engine.grid import SparseGrid
from trainer.engine.losses import beta_loss, cauchy_sparsity, total_variation, tv_neighbours


def test_cauchy_value_and_gradient() -> None:
    s = torch.tensor([0.0, 0.5, 2.0, 10.0], dtype=torch.float64, requires_grad=True)
    loss = cauchy_sparsity(s)
    assert math.isclose(float(loss.detach()), sum(math.log(1 + 2 * v * v) for v in (0.0, 0.5, 2.0, 10.0)), rel_tol=1e-12)
    (g,) = torch.autograd.grad(loss, s)
    torch.testing.assert_close(g, 4 * s.detach() / (1 + 2 * s.detach() ** 2))  # d/ds log(1 + 2 s^2)


def test_beta_loss_is_lowest_at_clear_or_opaque() -> None:
    a = torch.tensor([0.5])
    assert float(beta_loss(torch.tensor([0.001]))) < float(beta_loss(a))
    assert float(beta_loss(torch.tensor([0.999]))) < float(beta_loss(a))


def small_grid() -> SparseGrid:
    g = torch.Generator().manual_seed(0)
    res = (4, 3, 5)
    active = torch.rand(res, generator=g) < 0.7
    coords = torch.nonzero(active)
    n = coords.shape[0]
    return SparseGrid.from_coords(
        res, coords, torch.rand(n, generator=g), torch.randn((n, 12), generator=g), torch.tensor([[0.0] * 3, [1.0] * 3]), 1
    )


def test_tv_neighbours_follow_links() -> None:
    grid = small_grid()
    rows = torch.arange(grid.n_active)
    nb, present = tv_neighbours(grid, rows)
    coords = grid.coords()
    lookup = {tuple(c): i for i, c in enumerate(coords.tolist())}
    for r in range(grid.n_active):
        for axis in range(3):
            c = list(coords[r].tolist())
            c[axis] += 1
            expect = lookup.get(tuple(c))
            assert bool(present[r, axis]) == (expect is not None)
            if expect is not None:
                assert int(nb[r, axis]) == expect


def test_tv_value_by_hand_and_gradient_by_finite_differences() -> None:
    grid = small_grid()
    rows = torch.arange(grid.n_active)
    nb, present = tv_neighbours(grid, rows)
    values = grid.sh.double().clone().requires_grad_()
    loss = total_variation(values, rows, nb, present, eps=1e-6)
    # by hand, one voxel and channel at a time
    total = 0.0
    v = values.detach()
    for r in range(grid.n_active):
        for ch in range(values.shape[1]):
            sq = sum(float(v[nb[r, a], ch] - v[r, ch]) ** 2 for a in range(3) if present[r, a])
            total += math.sqrt(sq + 1e-6)
    assert math.isclose(float(loss.detach()), total, rel_tol=1e-9)
    assert torch.autograd.gradcheck(
        lambda x: total_variation(x, rows, nb, present, eps=1e-6), (values,), eps=1e-6, atol=1e-6
    )
