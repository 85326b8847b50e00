"""SH basis against closed-form real spherical harmonics and orthonormality on the sphere."""

from __future__ import annotations

import math

import torch

from trainer.engine.sh import num_coeffs, sh_basis, sh_to_rgb


def test_constants_match_closed_form() -> None:
    # Y_0^0 = 1 / (2 sqrt(pi)); |Y_1^m| = sqrt(3 / (4 pi)) * coordinate
    d = torch.tensor([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=torch.float64)
    b = sh_basis(d, 1)
    c0 = 0.5 / math.sqrt(math.pi)
    c1 = math.sqrt(3.0 / (4.0 * math.pi))
    torch.testing.assert_close(b[:, 0], torch.full((3,), c0, dtype=torch.float64))
    assert math.isclose(c0, 0.28209479, abs_tol=1e-8) and math.isclose(c1, 0.48860251, abs_tol=1e-8)
    # svox2 order: (-C1 y, C1 z, -C1 x)
    torch.testing.assert_close(b[0, 1:], torch.tensor([0.0, c1, 0.0], dtype=torch.float64))
    torch.testing.assert_close(b[1, 1:], torch.tensor([0.0, 0.0, -c1], dtype=torch.float64))
    torch.testing.assert_close(b[2, 1:], torch.tensor([-c1, 0.0, 0.0], dtype=torch.float64))


def test_degree_two_closed_forms() -> None:
    g = torch.Generator().manual_seed(0)
    d = torch.nn.functional.normalize(torch.randn((50, 3), generator=g, dtype=torch.float64), dim=-1)
    x, y, z = d.unbind(-1)
    b = sh_basis(d, 2)
    k = 0.5 * math.sqrt(15.0 / math.pi)
    torch.testing.assert_close(b[:, 4], k * x * y)
    torch.testing.assert_close(b[:, 6], 0.25 * math.sqrt(5.0 / math.pi) * (3 * z * z - 1.0))
    torch.testing.assert_close(b[:, 8], 0.25 * math.sqrt(15.0 / math.pi) * (x * x - y * y))


def test_orthonormal_on_the_sphere() -> None:
    # midpoint rule in (cos theta, phi): exact enough for polynomials of degree <= 6
    n_t, n_p = 400, 800
    ct = (torch.arange(n_t, dtype=torch.float64) + 0.5) / n_t * 2.0 - 1.0
    ph = (torch.arange(n_p, dtype=torch.float64) + 0.5) / n_p * 2.0 * math.pi
    ct, ph = torch.meshgrid(ct, ph, indexing="ij")
    st = torch.sqrt(1.0 - ct * ct)
    d = torch.stack((st * torch.cos(ph), st * torch.sin(ph), ct), -1).reshape(-1, 3)
    b = sh_basis(d, 3)
    gram = b.T @ b * (2.0 / n_t) * (2.0 * math.pi / n_p)
    torch.testing.assert_close(gram, torch.eye(num_coeffs(3), dtype=torch.float64), atol=2e-4, rtol=0)


def test_colour_is_relu_of_basis_dot_plus_half() -> None:
    coeffs = torch.tensor([[[1.0, 0.5, 0.0, 0.0], [-4.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 2.0]]])
    d = torch.tensor([[0.0, -1.0, 0.0]])  # basis (C0, C1, 0, 0)
    rgb = sh_to_rgb(coeffs, sh_basis(d, 1))
    c0, c1 = 0.28209479177387814, 0.4886025119029199
    torch.testing.assert_close(rgb, torch.tensor([[c0 + 0.5 * c1 + 0.5, 0.0, 0.5]]))
