"""Real spherical-harmonic basis in the ordering and sign convention of svox2/PlenOctrees (contract 4)."""

from __future__ import annotations

import torch

C0 = 0.28209479177387814
C1 = 0.4886025119029199
C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396)
C3 = (
    -0.5900435899266435, 2.890611442640554, -0.4570457994644658, 0.3731763325901154,
    -0.4570457994644658, 1.445305721320277, -0.5900435899266435,
)


def num_coeffs(degree: int) -> int:
    if not 0 <= degree <= 3:
        raise ValueError(f"sh_degree must be 0..3, got {degree}")
    return (degree + 1) ** 2


def sh_basis(dirs: torch.Tensor, degree: int) -> torch.Tensor:
    """Basis values [..., K] for unit directions [..., 3]."""
    k = num_coeffs(degree)
    x, y, z = dirs.unbind(-1)
    cols = [torch.full_like(x, C0)]
    if degree >= 1:
        cols += [-C1 * y, C1 * z, -C1 * x]
    if degree >= 2:
        xx, yy, zz = x * x, y * y, z * z
        cols += [
            C2[0] * x * y,
            C2[1] * y * z,
            C2[2] * (2.0 * zz - xx - yy),
            C2[3] * x * z,
            C2[4] * (xx - yy),
        ]
    if degree >= 3:
        cols += [
            C3[0] * y * (3 * xx - yy),
            C3[1] * x * y * z,
            C3[2] * y * (4 * zz - xx - yy),
            C3[3] * z * (2 * zz - 3 * xx - 3 * yy),
            C3[4] * x * (4 * zz - xx - yy),
            C3[5] * z * (xx - yy),
            C3[6] * x * (xx - 3 * yy),
        ]
    out = torch.stack(cols, dim=-1)
    assert out.shape[-1] == k
    return out


def sh_to_rgb(coeffs: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """Colour ReLU(sum_k Y_k * coeff + 0.5): coeffs [S, 3, K] (or [S, 3K]), basis [S, K] -> [S, 3]."""
    k = basis.shape[-1]
    coeffs = coeffs.reshape(coeffs.shape[0], 3, k)
    return torch.relu(torch.einsum("sck,sk->sc", coeffs, basis) + 0.5)
