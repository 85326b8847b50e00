"""RMSProp over the compact rows, touching only the rows a step touched, and the learning-rate schedules."""

from __future__ import annotations

import math

import torch


@torch.no_grad()
def rmsprop_step_(
    param: torch.Tensor,
    sq_avg: torch.Tensor,
    grad: torch.Tensor,
    lr: float,
    beta: float,
    eps: float,
    rows: torch.Tensor | None = None,
) -> None:
    """In place, per element with a non-zero gradient g: v = beta v + (1 - beta) g^2, or v = g^2 where
    v is still 0 (the element's first touch); p -= lr g / (sqrt(v) + eps). Elements with g = 0 keep
    both their value and their statistics.

    As svox2 does: starting v at 0 would make an element's first steps 1/sqrt(1 - beta) (4.5x at
    0.95) times the rate, and decaying v where nothing was learnt (a corner behind the surface, a
    sample of zero density) would inflate the next real step. With `rows`, `grad` is that of the
    whole tensor and only those rows are read and written, which costs O(touched) instead of O(N).
    """
    if rows is None:
        p, v, g = param, sq_avg, grad
    else:
        p, v, g = param.index_select(0, rows), sq_avg.index_select(0, rows), grad.index_select(0, rows)
    v_new, p_new = rmsprop_rows(p, v, g, lr, beta, eps)
    if rows is None:
        sq_avg.copy_(v_new)
        param.copy_(p_new)
    else:
        sq_avg.index_copy_(0, rows, v_new)
        param.index_copy_(0, rows, p_new)


def rmsprop_rows(
    p: torch.Tensor, v: torch.Tensor, g: torch.Tensor, lr: float, beta: float, eps: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """rmsprop_step_'s rule on gathered rows: the new (statistics, values). Element-wise selects, no
    masks, so no host synchronisation."""
    g2 = g * g
    v_new = torch.where(v == 0, g2, torch.lerp(g2, v, beta))  # lerp: beta v + (1 - beta) g^2
    v_new = torch.where(g == 0, v, v_new)
    # one pass per operation over [rows, C] is most of the cost: addcdiv fuses the step
    return v_new, torch.addcdiv(p, g, v_new.sqrt().add_(eps), value=-lr)  # g = 0 leaves p as it was


def touched_rows(n_rows: int, *row_sets: torch.Tensor, device: torch.device | None = None) -> torch.Tensor:
    """Sorted unique row ids from several index tensors, via a flag array (cheaper than sorting)."""
    flag = torch.zeros(n_rows, dtype=torch.bool, device=device)
    for rows in row_sets:
        flag.index_fill_(0, rows.reshape(-1), True)
    return torch.nonzero(flag).squeeze(1)


def log_lerp_lr(progress: float, lr_init: float, lr_final: float) -> float:
    """Exponential (log-linear) decay from lr_init to lr_final as `progress` (the share of the schedule
    done) goes from 0 to 1."""
    if lr_init <= 0 or lr_final <= 0:
        return max(lr_init, 0.0)
    t = min(max(progress, 0.0), 1.0)
    return math.exp(math.log(lr_init) * (1 - t) + math.log(lr_final) * t)


def delayed_lr(
    progress: float, step: int, lr_init: float, lr_final: float, delay_steps: int = 0, delay_mult: float = 1.0
) -> float:
    """log_lerp_lr times a warm-up that rises from delay_mult to 1 along a quarter sine over delay_steps
    (the warm-up counts steps, whatever drives the decay)."""
    lr = log_lerp_lr(progress, lr_init, lr_final)
    if delay_steps > 0:
        ramp = math.sin(0.5 * math.pi * min(max(step / delay_steps, 0.0), 1.0))
        lr *= delay_mult + (1.0 - delay_mult) * ramp
    return lr
