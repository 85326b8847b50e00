"""Where colours mix: the sRGB transfer curve, and the light a grid's colours are in.

Blender mixes light linearly: along a ray (Cycles integrates the emission of a volume), over its pixel
(the pixel filter) and with the film's background, and only then encodes the result as sRGB. Images
are stored encoded. A grid trained in linear light (config `color_space="linear"`, the default) mixes
its colours the same way and encodes each pixel before comparing it with its image, so what Blender
renders from it is what was trained. A grid in "srgb" mixes the encoded values directly, as the Plenoxels and NeRF codes
do; Blender then renders it slightly differently wherever colours mix (edges, thin surfaces).
"""

from __future__ import annotations

import torch

LINEAR = "linear"  # the names trainer.io.gridfile.COLOR_SPACES lists
SRGB = "srgb"

_KNEE_ENCODED = 0.04045
_KNEE_LINEAR = 0.0031308


def srgb_to_linear(c: torch.Tensor) -> torch.Tensor:
    """IEC 61966-2-1 decoding, for values in [0, 1]."""
    curve = ((c.clamp(min=_KNEE_ENCODED) + 0.055) / 1.055) ** 2.4
    return torch.where(c <= _KNEE_ENCODED, c / 12.92, curve)


def linear_to_srgb(c: torch.Tensor) -> torch.Tensor:
    """IEC 61966-2-1 encoding. Above 1 the curve goes on rising instead of clamping, so a training
    pixel brighter than white still has a gradient back; images clamp after. The clamp inside the power
    keeps its gradient finite below the knee, where it is not used."""
    curve = 1.055 * c.clamp(min=_KNEE_LINEAR) ** (1.0 / 2.4) - 0.055
    return torch.where(c <= _KNEE_LINEAR, c * 12.92, curve)


def to_light(colour: torch.Tensor, color_space: str) -> torch.Tensor:
    """An encoded colour (an image's pixel, a configured background) in the space `color_space` mixes in."""
    return srgb_to_linear(colour) if color_space == LINEAR else colour


def mid_grey(color_space: str) -> float:
    """Encoded 0.5 in the light `color_space` mixes in: where colours and a learnt background start, as
    far from black as from white to the eye (linear 0.5 would be encoded 0.74)."""
    return 0.5 if color_space != LINEAR else ((0.5 + 0.055) / 1.055) ** 2.4


def to_display(light: torch.Tensor, color_space: str) -> torch.Tensor:
    """A mixed colour (>= 0) back to the encoded values images hold (not clamped to 1)."""
    return linear_to_srgb(light) if color_space == LINEAR else light
