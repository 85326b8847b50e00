"""PSNR and SSIM against closed forms and a direct float64 implementation of Wang et al. (2004)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from numpy.lib.stride_tricks import sliding_window_view

from trainer.engine.metrics import psnr, ssim


def ssim_reference(x: np.ndarray, y: np.ndarray) -> float:
    """Direct formula: an explicit 11x11 Gaussian window (sigma 1.5) at every valid position, per channel."""
    r = np.arange(11) - 5.0
    w = np.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * 1.5**2))
    w /= w.sum()
    c1, c2 = 0.01**2, 0.03**2
    values = []
    for c in range(x.shape[2]):
        px = sliding_window_view(x[:, :, c], (11, 11))      # [H-10, W-10, 11, 11]
        py = sliding_window_view(y[:, :, c], (11, 11))
        mx, my = (px * w).sum((-1, -2)), (py * w).sum((-1, -2))
        vx = (w * (px - mx[..., None, None]) ** 2).sum((-1, -2))
        vy = (w * (py - my[..., None, None]) ** 2).sum((-1, -2))
        cxy = (w * (px - mx[..., None, None]) * (py - my[..., None, None])).sum((-1, -2))
        values.append(((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2)))
    return float(np.mean(values))


def test_psnr_closed_form_for_a_constant_offset() -> None:
    gt = torch.rand(20, 30, 3, dtype=torch.float64) * 0.8
    for offset in (0.1, 0.01, 0.05):
        assert psnr(gt + offset, gt) == pytest.approx(-20 * math.log10(offset), abs=1e-6)
    assert psnr(gt, gt) == math.inf


def test_ssim_of_identical_images_is_one() -> None:
    img = torch.rand(32, 24, 3)
    assert ssim(img, img) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("seed", [0, 1])
def test_ssim_matches_direct_formula(seed: int) -> None:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:40, 0:33] / 40.0
    gt = np.stack([np.sin(6 * xx + c) * 0.4 + 0.5 + 0.1 * yy for c in range(3)], -1)
    noisy = np.clip(gt + rng.normal(0, 0.08, gt.shape), 0, 1)
    blurred = 0.5 * gt + 0.5 * np.roll(gt, 3, axis=1)
    for other in (noisy, blurred):
        expected = ssim_reference(other, gt)
        assert ssim(torch.from_numpy(other).float(), torch.from_numpy(gt).float()) == pytest.approx(expected, abs=1e-5)
        assert expected < 0.99


def test_ssim_rejects_mismatched_or_tiny_images() -> None:
    with pytest.raises(ValueError, match="one shape"):
        ssim(torch.rand(16, 16, 3), torch.rand(16, 17, 3))
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(torch.rand(8, 16, 3), torch.rand(8, 16, 3))
