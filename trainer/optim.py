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
    """In place: v = beta v + (1 - beta) g^2; p -= lr g / (sqrt(v) + eps).

    With `rows`, only those rows are read and written: untouched rows keep their value and their
    statistics (the lazy variant, as in Plenoxels), which costs O(touched) instead of O(N).
    """
    if rows is None:
        sq_avg.mul_(beta).addcmul_(grad, grad, value=1.0 - beta)
        param.addcdiv_(grad, sq_avg.sqrt().add_(eps), value=-lr)
        return
    g = grad.index_select(0, rows)
    v = sq_avg.index_select(0, rows).mul_(beta).addcmul_(g, g, value=1.0 - beta)
    sq_avg.index_copy_(0, rows, v)
    param.index_copy_(0, rows, param.index_select(0, rows).addcdiv_(g, v.sqrt_().add_(eps), value=-lr))


def touched_rows(n_rows: int, *row_sets: torch.Tensor, device: torch.device | None = None) -> torch.Tensor:
    """Sorted unique row ids from several index tensors, via a flag array (cheaper than sorting)."""
    flag = torch.zeros(n_rows, dtype=torch.bool, device=device)
    for rows in row_sets:
        flag[rows.reshape(-1)] = True
    return torch.nonzero(flag).squeeze(1)


def log_lerp_lr(step: int, total: int, lr_init: float, lr_final: float) -> float:
    """Exponential (log-linear) decay from lr_init at step 0 to lr_final at `total`."""
    if lr_init <= 0 or lr_final <= 0:
        return max(lr_init, 0.0)
    t = min(max(step / max(total, 1), 0.0), 1.0)
    return math.exp(math.log(lr_init) * (1 - t) + math.log(lr_final) * t)


def delayed_lr(
    step: int, total: int, lr_init: float, lr_final: float, delay_steps: int = 0, delay_mult: float = 1.0
) -> float:
    """log_lerp_lr times a warm-up that rises from delay_mult to 1 along a quarter sine over delay_steps."""
    lr = log_lerp_lr(step, total, lr_init, lr_final)
    if delay_steps > 0:
        ramp = math.sin(0.5 * math.pi * min(max(step / delay_steps, 0.0), 1.0))
        lr *= delay_mult + (1.0 - delay_mult) * ramp
    return lr
