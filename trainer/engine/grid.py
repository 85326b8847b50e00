"""The sparse voxel grid: a dense int32 index (`links`, -1 = empty) into compact per-voxel rows.

Continuous grid coordinates x run from 0 to R along each axis; voxel i spans [i, i+1] and its sample
sits at its centre i + 0.5 (contract 4). Between centres the field is trilinear in the 8 surrounding
samples; samples of empty voxels, and outside the grid, count as zero.

Rows are kept in the row-major order of their voxels, so rays that pass near each other read memory
that lies near each other.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from trainer.engine.colour import SRGB
from trainer.engine.sh import num_coeffs

if TYPE_CHECKING:
    from trainer.io.gridfile import GridData

# The 8 corners of an interpolation cell, as (dx, dy, dz) in {0, 1}.
CORNERS = torch.tensor([[i >> 2 & 1, i >> 1 & 1, i & 1] for i in range(8)], dtype=torch.int64)


# Below this many elements, the backward scatters all 8 corners in one index_add_ through an [S, 8, C]
# product (16 MB); above it, one corner at a time, so that memory stays O(S * C).
_ONE_SCATTER_LIMIT = 1 << 22
# devices whose torch has embedding_bag with per-sample weights (MPS lacks it: pytorch issue 162270)
_BAG_DEVICES = {"cpu", "cuda"}


class TrilinearGather(torch.autograd.Function):
    """out[s] = sum_c w[s, c] * data[idx[s, c]] for data rows [N, C].

    The forward is an embedding_bag (a weighted sum of rows in one kernel: on the CPU 8x faster than
    8 gathers and multiply-adds); Apple's MPS backend has no embedding_bag, so there it is the
    gathers. The backward is written by hand (embedding_bag's own is slower than index_add_ here), and
    gradients flow to `data` only (sample positions are not optimised).
    """

    @staticmethod
    def forward(ctx: Any, data: torch.Tensor, idx: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(idx, w)
        ctx.n_rows = data.shape[0]
        if data.device.type in _BAG_DEVICES:
            return torch.nn.functional.embedding_bag(idx, data, per_sample_weights=w, mode="sum")
        out = data.index_select(0, idx[:, 0]) * w[:, :1]
        for c in range(1, idx.shape[1]):
            out.addcmul_(data.index_select(0, idx[:, c]), w[:, c : c + 1])
        return out

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, None, None]:
        idx, w = ctx.saved_tensors
        grad = None
        if ctx.needs_input_grad[0]:
            grad = grad_out.new_zeros((ctx.n_rows, grad_out.shape[1]))
            if idx.numel() * grad_out.shape[1] <= _ONE_SCATTER_LIMIT:
                per_corner = w[:, :, None] * grad_out[:, None, :]
                grad.index_add_(0, idx.reshape(-1), per_corner.reshape(-1, grad_out.shape[1]))
            else:
                for c in range(idx.shape[1]):
                    grad.index_add_(0, idx[:, c], grad_out * w[:, c : c + 1])
        return grad, None, None


def trilinear(data: torch.Tensor, idx: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return TrilinearGather.apply(data, idx, w)  # type: ignore[no-any-return]


class SparseGrid:
    """links int32 [nx, ny, nz]; density [N] in world units; sh [N, 3K] (channel-major: c*K + k)."""

    def __init__(
        self,
        links: torch.Tensor,
        density: torch.Tensor,
        sh: torch.Tensor,
        aabb: torch.Tensor,
        sh_degree: int,
    ) -> None:
        k = num_coeffs(sh_degree)
        n = density.shape[0]
        if sh.shape != (n, 3 * k):
            raise ValueError(f"sh must be [{n}, {3 * k}] for degree {sh_degree}, got {list(sh.shape)}")
        self.links = links
        self.density = density
        self.sh = sh
        self.aabb = aabb.to(torch.float32)
        self.sh_degree = sh_degree
        # what rays see beyond the grid, when it is learnt (trainer.engine.background); None: a fixed colour
        self.background_map: torch.Tensor | None = None
        # where its colours mix (trainer.engine.colour): "linear" like Blender, or "srgb" (grids from before)
        self.color_space: str = SRGB
        # Caches: links never change after construction (pruning and upsampling build a new grid).
        self._occupancy: tuple[torch.Tensor, torch.Tensor] | None = None
        self._near: tuple[int, torch.Tensor] | None = None
        self._coords: torch.Tensor | None = None
        self._padded: tuple[torch.Tensor, torch.Tensor] | None = None
        self._padded_rows: torch.Tensor | None = None
        self._pair_offsets32: torch.Tensor | None = None
        # (the density tensor it copies, that tensor's version counter, the volume)
        self._volume: tuple[torch.Tensor, int, torch.Tensor] | None = None
        # Constants the render path needs on every step, built once per grid: a Python number read
        # from a device tensor, or a small tensor made from Python values, stalls the host on a GPU.
        res = torch.tensor(self.resolution, dtype=torch.float32)
        host_vs = (self.aabb[1] - self.aabb[0]).cpu() / res
        self.voxel_size_host: tuple[float, float, float] = (float(host_vs[0]), float(host_vs[1]), float(host_vs[2]))
        self._voxel_size = host_vs.to(self.aabb.device)
        self._res_dev = res.to(links.device)
        self.cell_top = res.to(links.device)  # the largest occupancy-cell index per axis (cells 0..R)
        # sample_density's clamp on x - 0.5: exact up to a voxel beyond the grid below and 0.98 above,
        # where the upper corner's index would leave the padded volume (march's samples stay within
        # half a step of the box)
        self._u_lo = torch.full((3,), -1.0, device=links.device)
        self._u_hi = (res - 2.0**-6).to(links.device)

    # --- geometry --------------------------------------------------------------------------------
    @property
    def resolution(self) -> tuple[int, int, int]:
        nx, ny, nz = self.links.shape
        return int(nx), int(ny), int(nz)

    @property
    def device(self) -> torch.device:
        return self.links.device

    @property
    def n_active(self) -> int:
        return int(self.density.shape[0])

    @property
    def voxel_size(self) -> torch.Tensor:
        """World size of a voxel along x, y, z [3], on the grid's device."""
        return self._voxel_size

    @property
    def unit(self) -> float:
        """World length of one voxel (the smallest side): grid-unit density = world density * unit."""
        return min(self.voxel_size_host)

    def coords(self) -> torch.Tensor:
        """Integer (i, j, k) of each row, int64 [N, 3]; rows are in row-major voxel order."""
        if self._coords is not None:
            return self._coords
        flat = torch.nonzero(self.links.reshape(-1) >= 0).squeeze(1)
        order = self.links.reshape(-1)[flat].long()
        coords = torch.empty((flat.shape[0], 3), dtype=torch.int64, device=self.device)
        coords[order] = unflatten(flat, self.resolution)
        self._coords = coords
        return coords

    def world_to_grid(self, points: torch.Tensor) -> torch.Tensor:
        return (points - self.aabb[0].to(points.device)) / self.voxel_size.to(points.device)

    def _padded_links(self) -> tuple[torch.Tensor, torch.Tensor]:
        """links with a one-voxel border of -1 (flattened), and the flat offsets of the 8 corners.

        With the border, every corner of a point inside [0, R]^3 is a valid index, so the lookup
        needs no bounds checks.
        """
        if self._padded is None:
            padded = torch.nn.functional.pad(self.links, (1, 1, 1, 1, 1, 1), value=-1).reshape(-1)
            _, py, pz = (n + 2 for n in self.resolution)
            offsets = (CORNERS[:, 0] * py + CORNERS[:, 1]) * pz + CORNERS[:, 2]
            self._padded = (padded, offsets.to(self.device))
        return self._padded

    def corners(self, x: torch.Tensor, clamp: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Row ids [S, 8] (int64) and trilinear weights [S, 8] of the samples around grid points x [S, 3].

        Empty or out-of-grid corners get row 0 and weight 0, so callers need no masks. With clamp,
        points outside the centres' hull take the border value (used when resampling).
        """
        res = self._res_dev
        u = x - 0.5
        if clamp:
            u = torch.minimum(u.clamp(min=0.0), res - 1)
        else:
            # points beyond [-1, R] see no sample; pin them to the border ring of empties
            u = torch.minimum(u.clamp(min=-1.0), res)
        base = torch.floor(u)
        frac = u - base
        padded, offsets = self._padded_links()
        _, py, pz = (n + 2 for n in self.resolution)
        ijk = base.long() + 1  # index in the padded grid of the lower corner
        flat = (ijk[:, 0] * py + ijk[:, 1]) * pz + ijk[:, 2]
        flat = (flat[:, None] + offsets).clamp_(max=padded.numel() - 1)
        rows = padded[flat].long()
        valid = rows >= 0
        # weight of corner (dx,dy,dz) = prod over axes of (frac if d else 1 - frac); corner order dx-major
        fx, fy, fz = frac.unbind(-1)
        wx = torch.stack((1.0 - fx, fx), -1)
        wy = torch.stack((1.0 - fy, fy), -1)
        wz = torch.stack((1.0 - fz, fz), -1)
        w = (wx[:, :, None, None] * wy[:, None, :, None] * wz[:, None, None, :]).reshape(-1, 8)
        w = w * valid
        rows = rows.clamp(min=0)
        return rows, w

    def interpolate(self, x: torch.Tensor, clamp: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Density [S] and SH [S, 3K] at grid points x (no ReLU)."""
        idx, w = self.corners(x, clamp=clamp)
        return trilinear(self.density[:, None], idx, w)[:, 0], trilinear(self.sh, idx, w)

    # --- the density volume: what rays are marched through (no gradients) ---------------------------
    def padded_rows(self) -> torch.Tensor:
        """Each row's flat index in the (R+2)^3 padded volume (int64 [N]), rows in order."""
        if self._padded_rows is None:
            padded, _ = self._padded_links()
            flat = torch.nonzero(padded >= 0).squeeze(1)
            out = torch.empty(self.n_active, dtype=torch.int64, device=self.device)
            out[padded[flat].long()] = flat
            self._padded_rows = out
        return self._padded_rows

    def density_volume(self) -> torch.Tensor:
        """A dense copy of the density, flat [(R+2)^3] float32 with a border of zeros (empty voxels 0).

        The march reads density through it: eight gathers from one array and three lerps, where the
        rows need the links, a validity mask and [S, 8] weights, several times the work over the tens
        of samples a ray marches to find the few it keeps. One float per cell, like `links`. Rebuilt
        when `density` was replaced or changed in place, except through write_density, which keeps it.
        """
        d = self.density
        if self._volume is None or self._volume[0] is not d or self._volume[1] != d._version:
            vol = torch.zeros(self._padded_cells(), dtype=d.dtype, device=self.device)
            vol[self.padded_rows()] = d.detach()
            self._volume = (d, d._version, vol)
        return self._volume[2]

    def write_density(self, rows: torch.Tensor, values: torch.Tensor) -> None:
        """density[rows] = values, keeping the density volume current without a rebuild."""
        cached = self._volume
        fresh = cached is not None and cached[0] is self.density and cached[1] == self.density._version
        self.density.index_copy_(0, rows, values)
        if cached is not None and fresh:
            cached[2].index_copy_(0, self.padded_rows().index_select(0, rows), values)
            self._volume = (self.density, self.density._version, cached[2])

    def _padded_cells(self) -> int:
        px, py, pz = (n + 2 for n in self.resolution)
        return px * py * pz

    @torch.no_grad()
    def sample_density(self, x: torch.Tensor) -> torch.Tensor:
        """Trilinear density [S] (before the ReLU) at grid points x [S, 3], from the density volume: as
        interpolate() gives it from x in [-0.5, R + 0.48] per axis; points beyond are pinned there."""
        vol = self.density_volume()
        _, py, pz = (n + 2 for n in self.resolution)
        u = torch.clamp(x - 0.5, min=self._u_lo, max=self._u_hi)
        base = torch.floor(u)
        frac = u - base
        # int32 index arithmetic (vectorised on the CPU, where int64 multiplies are not)
        ijk = base.to(torch.int32) + 1  # the lower corner in the padded volume
        flat = (ijk[:, 0] * py + ijk[:, 1]) * pz + ijk[:, 2]
        # the z-neighbours lie next to each other: gather them in pairs, through an overlapping view
        pairs = torch.as_strided(vol, (vol.shape[0] - 1, 2), (1, 1))
        v = pairs.index_select(0, (flat[:, None] + self._pair_offsets()).view(-1)).view(-1, 2, 4)
        c = torch.lerp(v[:, 0], v[:, 1], frac[:, :1]).view(-1, 2, 2)  # corners dx-major: x, then y, z
        c = torch.lerp(c[:, 0], c[:, 1], frac[:, 1:2])
        return torch.lerp(c[:, 0], c[:, 1], frac[:, 2])

    def _pair_offsets(self) -> torch.Tensor:
        """The flat offsets (int32) of the corners with dz = 0: each heads a (z, z + 1) pair."""
        if self._pair_offsets32 is None:
            _, offsets = self._padded_links()
            self._pair_offsets32 = offsets[::2].to(torch.int32).contiguous()
        return self._pair_offsets32

    # --- empty-space skipping ----------------------------------------------------------------------
    def refresh_occupancy(self) -> None:
        """Forget the cached occupancy (call after density changed; the march then sees the new one)."""
        self._occupancy = None
        self._near = None

    def occupancy(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The interpolation cells whose field can be non-zero, and their bounding box.

        Only voxels with positive density count: a point whose 8 corners all have density <= 0 has
        ReLU'd density 0, contributes nothing and gets no gradient, so skipping it is exact while the
        mask is fresh. Cell c (0..R along each axis) holds the points whose lower interpolation corner
        is voxel c - 1, so it is live when any voxel in {c-1, c}^3 is. Returns (cells bool [R+1]^3,
        box [2, 3] in grid coordinates: the live voxels' extent, empty when there are none).
        """
        if self._occupancy is not None:
            return self._occupancy
        live = (self.density_volume() > 0).view(tuple(n + 2 for n in self.resolution))
        cell = torch.zeros_like(live[1:, 1:, 1:])
        nx, ny, nz = live.shape
        for dx, dy, dz in CORNERS.tolist():
            cell |= live[dx : nx - 1 + dx, dy : ny - 1 + dy, dz : nz - 1 + dz]
        # the live voxels' extent along each axis, from the mask's projections (on the device: no
        # host synchronisation). Padded index p is voxel p - 1, which spans [p - 1, p]; its field
        # reaches half a voxel further each side, to the neighbouring centres.
        lo, hi = [], []
        for axis in range(3):
            others = tuple(a for a in range(3) if a != axis)
            along = live.any(others[1]).any(others[0])
            index = torch.arange(along.shape[0], device=self.device, dtype=torch.float32)
            lo.append(torch.where(along, index, float(along.shape[0])).amin() - 1.5)
            hi.append(torch.where(along, index, -1.0).amax() + 0.5)
        top = self.cell_top
        box = torch.stack((torch.stack(lo).clamp(min=0.0), torch.minimum(torch.stack(hi), top)))
        box = torch.where(live.any(), box, torch.zeros_like(box))  # no live voxel: an empty box
        self._occupancy = (cell, box)
        return self._occupancy

    def near_occupancy(self, radius: int) -> torch.Tensor:
        """The occupancy's cells grown by `radius` cells (Chebyshev), bool [R+1]^3: a point whose cell
        is clear here has no live cell within `radius` along any axis, so a whole ray segment around
        it can be skipped without looking at its samples (render.march)."""
        cell, _ = self.occupancy()
        if self._near is None or self._near[0] != radius:
            self._near = (radius, dilate_mask(cell, radius))
        return self._near[1]

    # --- construction and conversion ---------------------------------------------------------------
    @classmethod
    def dense(
        cls,
        resolution: int | tuple[int, int, int],
        aabb: torch.Tensor,
        sh_degree: int,
        density: float,
        sh: float = 0.0,
        device: torch.device | str = "cpu",
    ) -> SparseGrid:
        """Every voxel active, with `density` in world units and every SH coefficient = `sh`."""
        res = (resolution,) * 3 if isinstance(resolution, int) else tuple(resolution)
        n = res[0] * res[1] * res[2]
        links = torch.arange(n, dtype=torch.int32, device=device).reshape(res)
        k = num_coeffs(sh_degree)
        return cls(
            links,
            torch.full((n,), float(density), device=device),
            torch.full((n, 3 * k), float(sh), device=device),
            aabb.to(device),
            sh_degree,
        )

    @classmethod
    def from_coords(
        cls,
        resolution: tuple[int, int, int],
        coords: torch.Tensor,
        density: torch.Tensor,
        sh: torch.Tensor,
        aabb: torch.Tensor,
        sh_degree: int,
    ) -> SparseGrid:
        """Builds links for voxels at integer coords [N, 3]; rows are reordered row-major."""
        device = density.device
        flat = flatten(coords.to(device).long(), resolution)
        order = torch.argsort(flat)
        flat = flat[order]
        if flat.numel() > 1 and bool((flat[1:] == flat[:-1]).any()):
            raise ValueError("duplicate voxel coordinates")
        links = torch.full(resolution, -1, dtype=torch.int32, device=device)
        links.reshape(-1)[flat] = torch.arange(flat.shape[0], dtype=torch.int32, device=device)
        return cls(links, density[order].contiguous(), sh[order].contiguous(), aabb.to(device), sh_degree)

    def to_grid_data(self, metadata: dict[str, Any]) -> GridData:
        from trainer.io.gridfile import GridData

        k = num_coeffs(self.sh_degree)
        with torch.no_grad():
            coords = self.coords().cpu().numpy().astype(np.int32)
            # Raw, signed: the field clamps after interpolation (contract 4 v2), so clamping here
            # would change what renders wherever a positive voxel neighbours a negative one.
            density = self.density.detach().cpu().numpy().astype(np.float32)
            sh = self.sh.detach().reshape(-1, 3, k).cpu().numpy().astype(np.float32)
        return GridData(
            resolution=np.asarray(self.resolution, dtype=np.int64),
            aabb=self.aabb.detach().cpu().numpy().astype(np.float64),
            coords=coords,
            density=density,
            sh=sh,
            sh_degree=int(self.sh_degree),
            metadata=metadata if isinstance(metadata, dict) else json.loads(metadata),
            background_map=(None if self.background_map is None else
                            self.background_map.detach().cpu().numpy().astype(np.float32)),
            color_space=self.color_space,
        )

    @classmethod
    def from_grid_data(cls, data: GridData, device: torch.device | str = "cpu") -> SparseGrid:
        res = tuple(int(v) for v in np.asarray(data.resolution).reshape(3))
        sh = torch.as_tensor(np.asarray(data.sh, dtype=np.float32)).reshape(len(data.density), 3 * num_coeffs(int(data.sh_degree)))
        grid = cls.from_coords(
            (res[0], res[1], res[2]),
            torch.as_tensor(np.asarray(data.coords, dtype=np.int64)),
            torch.as_tensor(np.asarray(data.density, dtype=np.float32)).to(device),
            sh.to(device),
            torch.as_tensor(np.asarray(data.aabb, dtype=np.float32)),
            int(data.sh_degree),
        )
        if data.background_map is not None:
            grid.background_map = torch.as_tensor(np.asarray(data.background_map, dtype=np.float32)).to(device)
        grid.color_space = data.color_space
        return grid

    def state_dict(self) -> dict[str, Any]:
        """CPU tensors for a checkpoint. Which voxels are active is stored as an occupancy code
        (encode_voxels: a bitmask or delta-coded indices, at most 4 bytes a voxel and usually about 1,
        where coordinates take 12), which works because rows are in row-major voxel order; a grid whose
        rows were not would store its coordinates instead."""
        flat = flatten(self.coords(), self.resolution).cpu().numpy()
        if flat.size > 1 and not bool((flat[1:] > flat[:-1]).all()):
            voxels: dict[str, Any] = {"coords": self.coords().cpu().to(torch.int32)}
        else:
            voxels = encode_voxels(flat, self.resolution)
        return {
            "resolution": list(self.resolution),
            **voxels,
            "density": self.density.detach().cpu().clone(),
            "sh": self.sh.detach().cpu().clone(),
            "aabb": self.aabb.cpu().clone(),
            "sh_degree": self.sh_degree,
            "background_map": None if self.background_map is None else self.background_map.detach().cpu().clone(),
            "color_space": self.color_space,
        }

    @classmethod
    def from_state_dict(cls, state: dict[str, Any], device: torch.device | str = "cpu") -> SparseGrid:
        res = tuple(int(v) for v in state["resolution"])
        resolution = (res[0], res[1], res[2])
        if "coords" in state:   # checkpoint version 1, or rows out of order
            coords = state["coords"].long()
        else:
            coords = unflatten(torch.from_numpy(decode_voxels(state, resolution)), resolution)
        grid = cls.from_coords(
            resolution,
            coords,
            state["density"].to(device),
            state["sh"].to(device),
            state["aabb"],
            int(state["sh_degree"]),
        )
        if state.get("background_map") is not None:
            grid.background_map = state["background_map"].to(device)
        grid.color_space = str(state.get("color_space", SRGB))  # checkpoints from before mixed in sRGB
        return grid


# unsigned integer types by byte width, and the signed ones of the same width that torch can store
_UNSIGNED = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}
_SIGNED = {1: np.uint8, 2: np.int16, 4: np.int32, 8: np.int64}


def encode_voxels(flat: np.ndarray, resolution: tuple[int, int, int]) -> dict[str, torch.Tensor]:
    """The set of active voxels, given as strictly increasing row-major indices, in the smaller of two
    lossless codes: {"bitmask": one bit per voxel of the grid} (R³/8 bytes, for dense grids) or
    {"deltas": the gaps between consecutive indices (the first from 0) in the narrowest unsigned type
    that holds the largest gap} (N bytes when no gap exceeds 255, for sparse ones)."""
    cells = resolution[0] * resolution[1] * resolution[2]
    flat = np.asarray(flat, dtype=np.int64)
    deltas = np.diff(flat, prepend=0)
    top = int(deltas.max()) if deltas.size else 0
    width = next(w for w in (1, 2, 4, 8) if top < 2 ** (8 * w))
    if (cells + 7) // 8 <= width * flat.size:
        mask = np.zeros(cells, dtype=bool)
        mask[flat] = True
        return {"bitmask": torch.from_numpy(np.packbits(mask))}
    # stored through a signed view of the same width: torch has no uint16/32/64 storage everywhere
    return {"deltas": torch.from_numpy(deltas.astype(_UNSIGNED[width]).view(_SIGNED[width]))}


def decode_voxels(code: dict[str, Any], resolution: tuple[int, int, int]) -> np.ndarray:
    """The row-major indices (int64, increasing) that encode_voxels encoded."""
    if "bitmask" in code:
        cells = resolution[0] * resolution[1] * resolution[2]
        return np.flatnonzero(np.unpackbits(code["bitmask"].numpy(), count=cells)).astype(np.int64)
    raw = code["deltas"].numpy()
    return np.cumsum(raw.view(_UNSIGNED[raw.itemsize]).astype(np.int64))


def flatten(ijk: torch.Tensor, resolution: tuple[int, int, int]) -> torch.Tensor:
    _, ny, nz = resolution
    return (ijk[..., 0] * ny + ijk[..., 1]) * nz + ijk[..., 2]


def unflatten(flat: torch.Tensor, resolution: tuple[int, int, int]) -> torch.Tensor:
    _, ny, nz = resolution
    return torch.stack((flat // (ny * nz), (flat // nz) % ny, flat % nz), dim=-1)


def dilate_mask(mask: torch.Tensor, steps: int) -> torch.Tensor:
    """A new 3-D bool mask: `mask` grown by `steps` cells (Chebyshev distance, i.e. the 26-neighbourhood
    applied `steps` times).

    The cube is separable: growing by one along x, then y, then z is the 26-neighbourhood, so each step
    is three in-place ORs of shifted views on one byte per cell.
    """
    out = mask.clone()
    for _ in range(steps):
        for axis in range(3):
            n = out.shape[axis]
            if n < 2:
                continue
            before = out.clone()  # the OR must read the mask as it was before this axis
            out.narrow(axis, 1, n - 1).logical_or_(before.narrow(axis, 0, n - 1))
            out.narrow(axis, 0, n - 1).logical_or_(before.narrow(axis, 1, n - 1))
    return out
