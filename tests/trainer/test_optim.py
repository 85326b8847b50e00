"""Sparse RMSProp against the dense update, and the learning-rate schedules."""

from __future__ import annotations

import math

import torch

from trainer.engine.optim import delayed_lr, log_lerp_lr, rmsprop_step_, touched_rows


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
    assert math.isclose(log_lerp_lr(0.0, 1.0, 0.01), 1.0)
    assert math.isclose(log_lerp_lr(0.5, 1.0, 0.01), 0.1)
    assert math.isclose(log_lerp_lr(1.0, 1.0, 0.01), 0.01)
    assert math.isclose(delayed_lr(0.0, 0, 1.0, 0.01, delay_steps=10, delay_mult=0.1), 0.1)
    assert math.isclose(delayed_lr(0.1, 10, 1.0, 0.01, delay_steps=10, delay_mult=0.1),
                        log_lerp_lr(0.1, 1.0, 0.01))
    assert delayed_lr(0.03, 3, 1.0, 0.01, 10, 0.1) < delayed_lr(0.06, 6, 1.0, 0.01, 10, 0.1)
    # the schedule's share done drives the decay, apart from the step; the warm-up still counts steps
    assert math.isclose(delayed_lr(1.0, 10, 1.0, 0.01), 0.01)  # step 10, yet the schedule's end
    ramp = 0.1 + 0.9 * math.sin(math.pi / 4)  # half-way through the 10-step warm-up
    assert math.isclose(delayed_lr(0.5, 5, 1.0, 0.01, 10, 0.1), 0.1 * ramp)


def test_first_touch_starts_the_statistics_at_the_squared_gradient() -> None:
    # as svox2: a fresh element's first step is the learning rate itself (in the gradient's sign),
    # not 1/sqrt(1 - beta) times it, which a zero start would give
    p, v = torch.zeros(4), torch.zeros(4)
    grad = torch.tensor([2.0, -0.5, 1e-3, 7.0])
    rmsprop_step_(p, v, grad, lr=0.1, beta=0.95, eps=1e-8)
    torch.testing.assert_close(v, grad**2)
    torch.testing.assert_close(p, -0.1 * torch.sign(grad), atol=1e-6, rtol=1e-5)
    # the second step decays as usual
    rmsprop_step_(p, v, grad, lr=0.1, beta=0.95, eps=1e-8)
    torch.testing.assert_close(v, grad**2)


def test_elements_without_gradient_keep_their_value_and_statistics() -> None:
    # a corner behind the surface, or of a sample with zero density, learnt nothing this step: its
    # statistics must not decay (which would inflate its next real step)
    p0, v0 = torch.tensor([1.0, 2.0, 3.0]), torch.tensor([0.5, 0.0, 0.25])
    p, v = p0.clone(), v0.clone()
    rmsprop_step_(p, v, torch.tensor([0.0, 0.0, 1.0]), lr=0.1, beta=0.9, eps=1e-8)
    assert torch.equal(p[:2], p0[:2]) and torch.equal(v[:2], v0[:2])
    expect_v = 0.9 * 0.25 + 0.1
    torch.testing.assert_close(v[2], torch.tensor(expect_v))
    torch.testing.assert_close(p[2], torch.tensor(3.0 - 0.1 / math.sqrt(expect_v)))
