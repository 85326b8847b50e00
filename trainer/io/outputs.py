"""A run's result files: rendered views (PNG, GIF) and their evaluation against the ground truth.

Every file is written to a temporary name in its folder and moved into place, so a reader (the
add-on, a second terminal) never sees half a file.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import imageio.v3 as iio
import numpy as np
import torch

from trainer.engine.metrics import psnr, ssim
from trainer.io.atomic import atomic_path


def to_uint8(img: torch.Tensor) -> np.ndarray:
    return (img.detach().clamp(0, 1) * 255 + 0.5).to(torch.uint8).cpu().numpy()


def _atomic_image(path: Path, pixels: np.ndarray | list[np.ndarray], **kwargs: Any) -> None:
    with atomic_path(Path(path)) as tmp:
        iio.imwrite(tmp, pixels, extension=Path(path).suffix, **kwargs)


def write_png(path: Path, img: torch.Tensor) -> None:
    """img: float [H, W, 3] in [0, 1]."""
    _atomic_image(path, to_uint8(img))


def write_gif(path: Path, frames: list[np.ndarray], fps: float = 20.0) -> None:
    """An endlessly looping GIF (Pillow, so no ffmpeg needed); frames uint8 [H, W, 3]."""
    _atomic_image(path, np.stack(frames), duration=1000.0 / fps, loop=0)


def subset(count: int, limit: int) -> list[int]:
    """Up to `limit` view indices spread evenly over `count` views (limit 0: all of them)."""
    if limit <= 0 or limit >= count:
        return list(range(count))
    return sorted({round(i * (count - 1) / max(limit - 1, 1)) for i in range(limit)})


RenderFn = Callable[[torch.Tensor, torch.Tensor, int, int], torch.Tensor]   # c2w, intrinsics, w, h -> [H, W, 3]


def evaluate_views(render: RenderFn, images: torch.Tensor, c2w: torch.Tensor, intrinsics: torch.Tensor,
                   views: list[int], renders_dir: Path | None,
                   on_view: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """PSNR and SSIM of each listed view against its image; the means are over views (as in the papers)."""
    height, width = images.shape[1:3]
    rows = []
    for n, i in enumerate(views):
        pred = render(c2w[i], intrinsics[i], width, height).float().cpu()
        gt = images[i].float()
        row: dict[str, Any] = {"view": i, "psnr": psnr(pred, gt), "ssim": ssim(pred, gt)}
        if renders_dir is not None:
            path = Path(renders_dir) / f"test_{i:03d}.png"
            write_png(path, pred)
            row["file"] = path.name
        rows.append(row)
        if on_view is not None:
            on_view(n + 1, len(views))
    return {
        "psnr": float(np.mean([r["psnr"] for r in rows])),
        "ssim": float(np.mean([r["ssim"] for r in rows])),
        "views": len(rows),
        "per_view": rows,
    }
