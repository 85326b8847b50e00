"""Image quality: PSNR and SSIM (Wang et al. 2004, 11x11 Gaussian window, sigma 1.5), images in [0, 1]."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def psnr(pred: torch.Tensor, gt: torch.Tensor) -> float:
    """Peak signal-to-noise ratio in dB for a data range of 1; +inf for identical images."""
    mse = torch.mean((pred.double() - gt.double()) ** 2).item()
    return math.inf if mse == 0 else -10.0 * math.log10(mse)


def mse_to_psnr(mse: float) -> float:
    return math.inf if mse <= 0 else -10.0 * math.log10(mse)


def _gaussian_1d(size: int, sigma: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    x = torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2
    w = torch.exp(-(x**2) / (2 * sigma**2))
    return w / w.sum()


def ssim(pred: torch.Tensor, gt: torch.Tensor, window: int = 11, sigma: float = 1.5) -> float:
    """Mean SSIM over channels and over the window positions that fit inside the image ('valid').

    pred, gt: [H, W, C]. The Gaussian is separable, so two 1-D convolutions replace the 11x11 one.
    """
    if pred.shape != gt.shape or pred.dim() != 3:
        raise ValueError(f"ssim needs two [H, W, C] images of one shape, got {list(pred.shape)} and {list(gt.shape)}")
    h, w, c = pred.shape
    if h < window or w < window:
        raise ValueError(f"ssim needs images of at least {window}x{window} pixels, got {w}x{h}")
    x = pred.permute(2, 0, 1).unsqueeze(0).double()
    y = gt.permute(2, 0, 1).unsqueeze(0).double()
    g = _gaussian_1d(window, sigma, x.dtype, x.device)
    gh = g.view(1, 1, 1, window).expand(c, 1, 1, window)
    gv = g.view(1, 1, window, 1).expand(c, 1, window, 1)

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.conv2d(t, gh, groups=c), gv, groups=c)

    c1, c2 = 0.01**2, 0.03**2
    mx, my = blur(x), blur(y)
    sxx = blur(x * x) - mx * mx
    syy = blur(y * y) - my * my
    sxy = blur(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
    return float(s.mean().item())
