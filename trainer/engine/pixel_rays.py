"""The training pixels' rays, made on demand for each batch, anywhere inside their pixels.

A ground-truth pixel is an average over the pixel's area (the renderer's pixel filter, and the loader's
area downscale on top), not the colour at its centre. Training each ray through a random point of its
pixel makes the field fit that average; rays through the centres alone fit the average with a field
sampled at one point per pixel, and the renders of such a field alias where the images do not.

Rays are not stored per pixel (24 bytes a pixel: 1.5 GB for 100 views of 800 x 800): each view keeps
its pose, and each distinct camera the camera-space directions at its pixel corners, [H+1, W+1, 3].
A ray's direction is the bilinear blend of its pixel's four corner directions, which is exact for a
pinhole camera (directions are linear in the pixel position) and within ~1e-4 px for the lens models'
smooth maps at one-pixel spacing.
"""

from __future__ import annotations

import torch

from trainer.io.lens import pixel_directions


class PixelRays:
    def __init__(self, c2w: torch.Tensor, intrinsics: torch.Tensor, width: int, height: int,
                 device: torch.device) -> None:
        """c2w [V, 4, 4] (OpenGL axes), intrinsics [V, 4 or 11] as in trainer.io.data.Split."""
        self.width, self.height = width, height
        self.c2w = c2w.to(device=device, dtype=torch.float32)
        cameras, which = torch.unique(intrinsics.detach().float().cpu(), dim=0, return_inverse=True)
        v, u = torch.meshgrid(torch.arange(height + 1, dtype=torch.float32),
                              torch.arange(width + 1, dtype=torch.float32), indexing="ij")
        self.corners = torch.stack([pixel_directions(cam, u, v) for cam in cameras]).to(device)
        self.camera_of_view = which.to(device)

    @property
    def count(self) -> int:
        return self.c2w.shape[0] * self.height * self.width

    def at(self, index: torch.Tensor, within: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Origins and unit directions [B, 3] of pixels index [B] ((view*H + v)*W + u, as the split's
        images flattened), through the point `within` [B, 2] in [0, 1]^2 of each pixel (None: centres)."""
        per_view = self.height * self.width
        view = torch.div(index, per_view, rounding_mode="floor")
        pixel = index - view * per_view
        row = torch.div(pixel, self.width, rounding_mode="floor")
        col = pixel - row * self.width
        if within is None:
            fu = fv = torch.full(index.shape, 0.5, device=index.device)
        else:
            fu, fv = within[:, 0], within[:, 1]
        # the pixel's four corner directions in one gather from the flattened [cameras, H+1, W+1] table
        w1 = self.width + 1
        top_left = (self.camera_of_view.index_select(0, view) * (self.height + 1) + row) * w1 + col
        at = self.corners.view(-1, 3).index_select(0, torch.cat((top_left, top_left + 1, top_left + w1, top_left + w1 + 1)))
        tl, tr, bl, br = at.view(4, -1, 3).unbind(0)
        top = (1 - fu)[:, None] * tl + fu[:, None] * tr
        bottom = (1 - fu)[:, None] * bl + fu[:, None] * br
        d_cam = (1 - fv)[:, None] * top + fv[:, None] * bottom
        pose = self.c2w.index_select(0, view)
        dirs = torch.nn.functional.normalize(torch.einsum("bij,bj->bi", pose[:, :3, :3], d_cam), dim=-1)
        return pose[:, :3, 3].contiguous(), dirs
