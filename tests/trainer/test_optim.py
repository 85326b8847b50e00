"""Sparse RMSProp against the dense update, and the learning-rate schedules."""

from __future__ import annotations

import math

import torch

from trainer.optim import delayed_lr, log_lerp_lr, rmsprop_step_, touched_rows


def test_sparse_rmsprop_equals_dense_on_touched_rows_and_leaves_the_rest() -> None:
    g = torch.Generator().manual_seed(0)
    p0 = torch.randn((50, 4), generator=g)
    v0 = torch.rand((50, 4), generator=g)
    rows = torch.tensor([3, 7, 8, 20, 49])
    grad = torch.zeros((50, 4))
    grad[rows] = torch.randn((5, 4), generator=g)
    dense_p, dense_v = p0.clone(), v0.clone()
    rmsprop_step_(dense_p, dense_v, grad, lr=0.1, beta=0.9, eps=1e-8)
    sparse_p, sparse_v = p0.clone(), v0.clone()
    rmsprop_step_(sparse_p, sparse_v, grad, lr=0.1, beta=0.9, eps=1e-8, rows=rows)
    torch.testing.assert_close(sparse_p[rows], dense_p[rows])
    torch.testing.assert_close(sparse_v[rows], dense_v[rows])
    others = torch.ones(50, dtype=torch.bool)
    others[rows] = False
    assert torch.equal(sparse_p[others], p0[others]) and torch.equal(sparse_v[others], v0[others])
    # the dense rule itself, written out
    v = 0.9 * v0[rows] + 0.1 * grad[rows] ** 2
    torch.testing.assert_close(dense_p[rows], p0[rows] - 0.1 * grad[rows] / (v.sqrt() + 1e-8))


def test_touched_rows_is_sorted_unique() -> None:
    rows = touched_rows(10, torch.tensor([[5, 1], [5, 9]]), torch.tensor([1, 0]))
    assert rows.tolist() == [0, 1, 5, 9]


def test_schedules() -> None:
    assert math.isclose(log_lerp_lr(0, 100, 1.0, 0.01), 1.0)
    assert math.isclose(log_lerp_lr(50, 100, 1.0, 0.01), 0.1)
    assert math.isclose(log_lerp_lr(100, 100, 1.0, 0.01), 0.01)
    assert math.isclose(delayed_lr(0, 100, 1.0, 0.01, delay_steps=10, delay_mult=0.1), 0.1)
    assert math.isclose(delayed_lr(10, 100, 1.0, 0.01, delay_steps=10, delay_mult=0.1), log_lerp_lr(10, 100, 1.0, 0.01))
    assert delayed_lr(3, 100, 1.0, 0.01, 10, 0.1) < delayed_lr(6, 100, 1.0, 0.01, 10, 0.1)
