"""Writes OpenVDB files with numpy alone, so the add-on needs no OpenVDB Python binding.

Blender builds differ in the binding they ship (none in 4.2's `bpy` wheel, `pyopenvdb` in the 4.2
application, `openvdb` in later ones), but every one reads the same file format. This module writes
that format (file version 224, read by OpenVDB 6 and later, so by Blender 4.2–5.0's OpenVDB 9–12)
for float and vec3s grids on the standard 5-4-3 tree:

    header      int64 magic 0x56444220, uint32 file version 224, uint32 library major and minor,
                uint8 "has grid offsets" = 1, 36 ASCII characters of UUID
    metadata    the file's MetaMap (see _meta_map)
    int32       grid count, then per grid:
      descriptor  string unique name, string tree type, string instance parent ("")
                  int64 grid, block and end positions (absolute offsets in the file)
      grid        uint32 compression flags, MetaMap, transform (map type name + map fields)
      topology    int32 buffer count 1, root: background, uint32 tile count 0, uint32 child count,
                  per child (origin order): int32×3 origin, InternalNode<5> topology, where an
                  internal node is child mask, value mask, compressed tile values, then its
                  children's topology; a leaf's topology is its value mask
      buffers     per leaf, depth first: value mask, compressed voxel values

Compression is COMPRESS_ACTIVE_MASK alone (no zlib, no Blosc): each node's value array is a flag
byte NO_MASK_OR_INACTIVE_VALS (every inactive value is the background) followed by the node's
active values only. That keeps files about as small as OpenVDB's own for data like ours (random-ish
floats compress poorly), and writing is a few array copies. Internal nodes hold no tiles, so their
value arrays are empty. Strings are uint32 length + bytes; everything is little-endian.

Semantics mirror `Grid.copyFromArray(array, ijk=offset, tolerance=0)`: a voxel is active when its
value differs from the background (any component for vec3), unless the caller passes `active`.
With `active` given, `values` may instead hold only the active voxels' values, in the C order of the
mask (np.argwhere(active)): a grid with many voxels per coefficient (SH) then never needs a dense
block. Grids that pass the same `active` array (the same object) at the same offset share one tree
layout, computed once per file.
"""

from __future__ import annotations

import functools
import os
import struct
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

GridClass = Literal["unknown", "level set", "fog volume", "staggered"]
# 4×4 rows in OpenVDB's row-vector layout (translation in the last row), or (scale, translation).
TransformLike = np.ndarray | Sequence[Sequence[float]]

MAGIC = 0x56444220  # "VDB " read as a little-endian integer
FILE_VERSION = 224  # OPENVDB_FILE_VERSION_MULTIPASS_IO: current since OpenVDB 6, per-grid compression
LIBRARY_VERSION = (9, 0)  # informational (readers act on the file version): the oldest library targeted
COMPRESS_ACTIVE_MASK = 0x2  # io::COMPRESS_ACTIVE_MASK: nodes store active values only
COMPRESSION_NAME = "active values"  # io::compressionToString(COMPRESS_ACTIVE_MASK)
NO_MASK_OR_INACTIVE_VALS = 0  # per-node flag: all inactive values equal the background

LEAF_LOG2, LOWER_LOG2, UPPER_LOG2 = 3, 4, 5  # the 5-4-3 tree: leaf 8³, internal 16³ and 32³ children
LOWER_SHIFT = LEAF_LOG2 + LOWER_LOG2  # 7: an InternalNode<4> spans 128 voxels per axis
UPPER_SHIFT = LOWER_SHIFT + UPPER_LOG2  # 12: an InternalNode<5> spans 4096
LEAF_SIZE = 1 << (3 * LEAF_LOG2)  # 512 voxels
LEAF_MASK_BYTES = LEAF_SIZE // 8  # 64
LOWER_SIZE = 1 << (3 * LOWER_LOG2)  # 4096 child slots
UPPER_SIZE = 1 << (3 * UPPER_LOG2)  # 32768 child slots
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


@dataclass(frozen=True)
class VdbGrid:
    """One grid: a dense block of values placed at an integer index offset.

    values: float32 (X, Y, Z) for a float grid, (X, Y, Z, 3) for a vec3s grid; values[0, 0, 0] is
        voxel `offset`. With `active`: or (M,) / (M, 3), the M active voxels' values in the mask's C order.
    transform: index→world, either 4×4 rows with the translation in the last row (what
        VdbArrays.index_to_world_rows() gives) or a pair (scale[3], translation[3]).
    active: bool (X, Y, Z) choosing the active voxels; None: those whose value differs from the
        background. Inactive voxels read back as the background, whatever the block holds there.
    grid_class: written as the "class" metadata when given ("fog volume" for densities).
    """

    name: str
    values: np.ndarray
    offset: Sequence[int] | np.ndarray
    transform: TransformLike
    background: float | Sequence[float] = 0.0
    grid_class: GridClass | None = None
    active: np.ndarray | None = None


@dataclass(frozen=True)
class _Tree:
    """A grid's active leaves, in the depth-first order the file stores them."""

    origins: np.ndarray  # int64 (L, 3), leaf origins (multiples of 8)
    masks: np.ndarray  # uint8 (L, 64), leaf value masks as NodeMask<3> words in little-endian bytes
    counts: np.ndarray  # int64 (L,), active voxels per leaf
    values: np.ndarray  # float32 (N,) or (N, 3), active values leaf by leaf, in voxel offset order
    bbox: tuple[np.ndarray, np.ndarray] | None  # active voxels' inclusive index bounds


def _string(text: str) -> bytes:
    raw = text.encode("utf-8")
    return struct.pack("<I", len(raw)) + raw


def _meta_map(entries: Mapping[str, tuple[str, bytes]]) -> bytes:
    """A MetaMap: int32 count, then per entry name, type name, uint32 size and the value bytes.
    OpenVDB keeps metadata in a std::map, so it writes them sorted by name; so do we."""
    out = [struct.pack("<i", len(entries))]
    for name in sorted(entries):
        type_name, payload = entries[name]
        out.append(_string(name) + _string(type_name) + struct.pack("<I", len(payload)) + payload)
    return b"".join(out)


def _str_meta(text: str) -> tuple[str, bytes]:
    return "string", text.encode("utf-8")


def _transform_bytes(transform: TransformLike) -> bytes:
    """A math::Transform: the map's type name and its serialised fields.

    A diagonal linear part becomes a (Uniform)ScaleTranslateMap, as OpenVDB's createLinearTransform
    would simplify it; its reader takes the derived fields from the file rather than recomputing
    them, so they are written too. Anything else is an AffineMap (its 4×4 matrix)."""
    m = np.asarray(transform, dtype=np.float64)
    if m.shape == (2, 3):
        scale, translation, matrix = m[0], m[1], None
    elif m.shape == (4, 4):
        if not np.array_equal(m[:, 3], [0.0, 0.0, 0.0, 1.0]):
            raise ValueError(f"transform is not affine: last column {m[:, 3].tolist()} != [0, 0, 0, 1]")
        linear = m[:3, :3]
        translation = m[3, :3]
        is_diagonal = not np.any(linear - np.diag(np.diag(linear)))
        scale, matrix = (np.diag(linear).copy(), None) if is_diagonal else (None, m)
    else:
        raise ValueError(f"transform must be 4×4 rows or (scale, translation), got shape {m.shape}")
    if not np.all(np.isfinite(m)):
        raise ValueError("transform holds a non-finite number")
    if matrix is not None:
        if abs(np.linalg.det(matrix[:3, :3])) < 3e-15:  # AffineMap's own singularity threshold
            raise ValueError("transform is singular")
        return _string("AffineMap") + matrix.astype("<f8").tobytes()
    assert scale is not None
    if np.any(scale == 0.0):
        raise ValueError(f"transform has a zero scale: {scale.tolist()}")
    uniform = scale[0] == scale[1] == scale[2]
    inverse = 1.0 / scale
    fields = np.stack([translation, scale, np.abs(scale), inverse, inverse * inverse, inverse / 2.0])
    name = "UniformScaleTranslateMap" if uniform else "ScaleTranslateMap"
    return _string(name) + fields.astype("<f8").tobytes()


def differs_from(values: np.ndarray, background: float | Sequence[float] | np.ndarray) -> np.ndarray:
    """bool (X, Y, Z): voxels whose value differs from the background in any component, which is
    what copyFromArray(..., tolerance=0) makes active."""
    ne = values != np.asarray(background, values.dtype)
    if ne.ndim == 3:
        return ne
    # OR of the three bool columns: numpy reduces a length-3 axis (.any(-1)) several times slower.
    flat = ne.reshape(-1, 3)
    return (flat[:, 0] | flat[:, 1] | flat[:, 2]).reshape(ne.shape[:3])


def _active_mask(values: np.ndarray, background: np.ndarray, active: np.ndarray | None) -> np.ndarray:
    if active is None:
        return differs_from(values, background)
    active = np.asarray(active, dtype=bool)
    if active.shape != values.shape[:3]:
        raise ValueError(f"active mask shape {active.shape} != block shape {values.shape[:3]}")
    return active


@dataclass(frozen=True)
class _Layout:
    """Where a mask's active voxels go in the file: the leaves and, per active voxel in file order,
    its flat index into the block (and, made on demand, its rank in the mask's C order)."""

    origins: np.ndarray
    masks: np.ndarray
    counts: np.ndarray
    bbox: tuple[np.ndarray, np.ndarray] | None
    flat: np.ndarray  # int64 (N,): flat index into the block of each active voxel, in file order
    active: np.ndarray

    @functools.cached_property
    def c_order_rank(self) -> np.ndarray:
        """Position of each file-order voxel among the active voxels in C order (np.argwhere's);
        computed once per layout, since every SH grid of a file needs the same one."""
        return np.searchsorted(np.flatnonzero(self.active), self.flat)


def _layout(offset: np.ndarray, active: np.ndarray) -> _Layout:
    """Cuts the block into 8³ leaves with array ops: only leaves holding an active voxel are kept."""
    shape = np.array(active.shape, np.int64)
    if not active.any():
        return _Layout(
            np.zeros((0, 3), np.int64), np.zeros((0, LEAF_MASK_BYTES), np.uint8), np.zeros(0, np.int64),
            None, np.zeros(0, np.int64), active,
        )
    lo = offset & ~np.int64(7)  # the leaf-aligned corner at or below the block (floor for negatives too)
    start = offset - lo
    nx, ny, nz = (int(n) for n in (start + shape + 7) // 8)  # leaves per axis
    padded = np.zeros((nx * 8, ny * 8, nz * 8), bool)
    padded[start[0] : start[0] + shape[0], start[1] : start[1] + shape[1], start[2] : start[2] + shape[2]] = active
    # Packing along z turns each 8-voxel row of a leaf into one byte with bit z set for an active
    # voxel: byte 8x + y of that leaf's value mask, whose bit n is voxel (x << 6) | (y << 3) | z.
    rows = np.packbits(padded, axis=2, bitorder="little").reshape(nx, 8, ny, 8, nz)
    lx, ly, lz = np.nonzero(rows.any(axis=(1, 3)))
    origins = lo + 8 * np.stack([lx, ly, lz], axis=1)
    # Depth-first file order: by upper node origin, then the lower node's slot in it, then the
    # leaf's slot in that (each slot index is x-major, like Coord ordering of the root's table).
    keys = [origins[:, axis] >> UPPER_SHIFT for axis in range(3)]
    keys += [(origins[:, axis] >> LOWER_SHIFT) & ((1 << UPPER_LOG2) - 1) for axis in range(3)]
    keys += [(origins[:, axis] >> LEAF_LOG2) & ((1 << LOWER_LOG2) - 1) for axis in range(3)]
    order = np.lexsort(keys[::-1])  # lexsort's last key is the primary one
    lx, ly, lz, origins = lx[order], ly[order], lz[order], origins[order]
    masks = rows.transpose(0, 2, 4, 1, 3)[lx, ly, lz].reshape(-1, LEAF_MASK_BYTES)
    # Active voxels leaf by leaf, offsets ascending (the order the file wants): index n of the
    # unpacked masks is leaf n // 512, voxel offset n % 512.
    found = np.flatnonzero(np.unpackbits(masks, axis=1, bitorder="little"))
    leaf_of, voxel = found >> (3 * LEAF_LOG2), found & (LEAF_SIZE - 1)
    # Flat index into the block = the leaf corner's (possibly outside, for padding) + the voxel's step.
    sy, sz = int(shape[1]), int(shape[2])
    corner = 8 * np.stack([lx, ly, lz], axis=1) - start
    leaf_base = (corner[:, 0] * sy + corner[:, 1]) * sz + corner[:, 2]
    steps = np.arange(LEAF_SIZE)
    voxel_step = ((steps >> 6) * sy + ((steps >> 3) & 7)) * sz + (steps & 7)
    # Bounds of the active voxels from the packed rows (8× smaller than the block).
    x_any = np.flatnonzero(rows.reshape(nx * 8, -1).any(axis=1))
    y_any = np.flatnonzero(rows.reshape(nx * 8, ny * 8, nz).any(axis=(0, 2)))
    z_any = np.flatnonzero(np.unpackbits(np.bitwise_or.reduce(rows.reshape(-1, nz), axis=0), bitorder="little"))
    return _Layout(
        origins=origins,
        masks=masks,
        counts=np.bincount(leaf_of, minlength=len(origins)).astype(np.int64),
        bbox=(lo + [x_any[0], y_any[0], z_any[0]], lo + [x_any[-1], y_any[-1], z_any[-1]]),
        flat=leaf_base[leaf_of] + voxel_step[voxel],
        active=active,
    )


def _build_tree(values: np.ndarray, layout: _Layout, sparse: bool) -> _Tree:
    """The layout's leaves with this grid's values: gathered from the dense block, or (sparse) put
    from C order into file order."""
    comps = values.shape[1:] if sparse else values.shape[3:]
    if sparse:
        active_values = np.take(values, layout.c_order_rank, axis=0)
    else:
        active_values = np.take(values.reshape(-1, *comps), layout.flat, axis=0)
    return _Tree(
        origins=layout.origins,
        masks=layout.masks,
        counts=layout.counts,
        values=np.ascontiguousarray(active_values, dtype="<f4").reshape(-1, *comps),
        bbox=layout.bbox,
    )


def _child_mask(slots: np.ndarray, size: int) -> bytes:
    bits = np.zeros(size, bool)
    bits[slots] = True
    return np.packbits(bits, bitorder="little").tobytes()


def _slot(origins: np.ndarray, child_shift: int, log2: int) -> np.ndarray:
    """Each child's slot in its parent: (x << 2·log2) | (y << log2) | z of its local child index."""
    local = (origins >> child_shift) & ((1 << log2) - 1)
    return (local[:, 0] << (2 * log2)) | (local[:, 1] << log2) | local[:, 2]


def _group_starts(keys: np.ndarray) -> np.ndarray:
    """Start indices of the runs of equal rows in `keys` (N, 3), plus N at the end."""
    if len(keys) == 0:
        return np.zeros(1, np.int64)
    change = np.flatnonzero(np.any(keys[1:] != keys[:-1], axis=1)) + 1
    return np.concatenate([[0], change, [len(keys)]])


def _internal_nodes(tree: _Tree) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(lower_starts, lower_origins, upper_starts): leaves [lower_starts[n], lower_starts[n + 1])
    share lower node n, whose origin's leaf is lower_origins[n]; lower nodes [upper_starts[u],
    upper_starts[u + 1]) share upper node u. Runs, because the leaves are in depth-first order."""
    lower_starts = _group_starts(tree.origins >> LOWER_SHIFT)
    lower_origins = tree.origins[lower_starts[:-1]]
    return lower_starts, lower_origins, _group_starts(lower_origins >> UPPER_SHIFT)


def _topology(tree: _Tree, background: bytes) -> list[bytes]:
    """Tree::writeTopology. Loops run over internal nodes only (a few per 256³ grid)."""
    # The empty value array of an internal node: its flag byte, then no values (no active tiles).
    no_tiles_upper = bytes(UPPER_SIZE // 8) + bytes([NO_MASK_OR_INACTIVE_VALS])
    no_tiles_lower = bytes(LOWER_SIZE // 8) + bytes([NO_MASK_OR_INACTIVE_VALS])
    lower_starts, lower_origins, upper_starts = _internal_nodes(tree)
    out = [struct.pack("<i", 1), background, struct.pack("<II", 0, len(upper_starts) - 1)]
    for u in range(len(upper_starts) - 1):
        first, last = upper_starts[u], upper_starts[u + 1]  # this upper node's lower nodes
        upper_origin = (lower_origins[first] >> UPPER_SHIFT) << UPPER_SHIFT
        out.append(struct.pack("<3i", *(int(v) for v in upper_origin)))
        out.append(_child_mask(_slot(lower_origins[first:last], LOWER_SHIFT, UPPER_LOG2), UPPER_SIZE))
        out.append(no_tiles_upper)
        for n in range(first, last):
            a, b = lower_starts[n], lower_starts[n + 1]  # this lower node's leaves
            out.append(_child_mask(_slot(tree.origins[a:b], LEAF_LOG2, LOWER_LOG2), LOWER_SIZE))
            out.append(no_tiles_lower)
            out.append(tree.masks[a:b].tobytes())  # each leaf's topology is its value mask
    return out


def _buffers(tree: _Tree) -> np.ndarray:
    """Tree::writeBuffers: per leaf its value mask, the flag byte and its active values, built as
    one byte array: the 65 header bytes of each leaf go to computed positions, values fill the rest."""
    header = LEAF_MASK_BYTES + 1
    value_bytes = tree.values.view(np.uint8).reshape(-1)
    per_voxel = tree.values.dtype.itemsize * (1 if tree.values.ndim == 1 else tree.values.shape[1])
    sizes = header + tree.counts * per_voxel
    starts = np.cumsum(sizes) - sizes
    out = np.empty(int(sizes.sum()), np.uint8)
    is_header = np.zeros(out.size, bool)
    is_header[(starts[:, None] + np.arange(header)).reshape(-1)] = True
    headers = np.zeros((len(tree.counts), header), np.uint8)
    headers[:, :LEAF_MASK_BYTES] = tree.masks  # byte 64 stays NO_MASK_OR_INACTIVE_VALS
    out[is_header] = headers.reshape(-1)
    out[~is_header] = value_bytes
    return out


def _mem_bytes(tree: _Tree, n_upper: int, n_lower: int, value_size: int) -> int:
    """An estimate of the tree's memory for OpenVDB's file_mem_bytes (informational: readers only
    report it): node tables of child pointer/tile unions (8 bytes, 16 for vec3s), masks, leaf data.
    Within 1 % of what OpenVDB 12 writes for a one-leaf tree."""
    slot = 8 if value_size <= 8 else 16
    upper = UPPER_SIZE * slot + 2 * UPPER_SIZE // 8
    lower = LOWER_SIZE * slot + 2 * LOWER_SIZE // 8
    leaf = LEAF_SIZE * value_size + LEAF_MASK_BYTES
    return n_upper * upper + n_lower * lower + len(tree.counts) * leaf


def _grid_parts(grid: VdbGrid, layouts: dict[tuple[int, bytes], _Layout]) -> tuple[bytes, list[bytes], np.ndarray]:
    """(descriptor head, grid metadata + transform + topology, buffers) of one grid. `layouts` caches
    tree layouts by (id of the active mask, offset) across the grids of one file."""
    values = np.asarray(grid.values, dtype=np.float32)
    sparse = grid.active is not None and values.ndim in (1, 2)
    value_shape = values.shape[1:] if sparse else values.shape[3:]
    if values.ndim in (1, 3) and value_shape == ():
        tree_type, value_size = "Tree_float_5_4_3", 4
    elif values.ndim in (2, 4) and value_shape == (3,) and (sparse or values.ndim == 4):
        tree_type, value_size = "Tree_vec3s_5_4_3", 12
    else:
        raise ValueError(
            f"grid {grid.name!r}: values must be (X, Y, Z) or (X, Y, Z, 3), or (M,) or (M, 3) with `active`, "
            f"got {values.shape}"
        )
    background = np.asarray(grid.background, dtype="<f4")
    if background.shape != value_shape:
        raise ValueError(f"grid {grid.name!r}: background shape {background.shape} != value shape {value_shape}")
    offset = np.asarray(grid.offset, dtype=np.int64).reshape(3)
    if sparse:
        assert grid.active is not None
        active = np.asarray(grid.active, dtype=bool)
        if values.shape[0] != int(np.count_nonzero(active)):
            raise ValueError(f"grid {grid.name!r}: {values.shape[0]} values for {np.count_nonzero(active)} active voxels")
    else:
        active = _active_mask(values, background, grid.active)
    if np.any(offset < INT32_MIN) or np.any(offset + np.array(active.shape) - 1 > INT32_MAX):
        raise ValueError(f"grid {grid.name!r}: block at {offset.tolist()} leaves OpenVDB's int32 index space")
    key = (id(grid.active), offset.tobytes())
    layout = layouts.get(key) if grid.active is not None else None
    if layout is None:
        layout = _layout(offset, active)
        if grid.active is not None:
            layouts[key] = layout
    tree = _build_tree(values, layout, sparse)

    topology = _topology(tree, background.tobytes())
    lower_starts, _, upper_starts = _internal_nodes(tree)
    n_lower, n_upper = len(lower_starts) - 1, len(upper_starts) - 1
    if tree.bbox is None:  # what OpenVDB writes for an empty tree: an inverted box
        bbox_lo, bbox_hi = np.full(3, INT32_MAX), np.full(3, INT32_MIN)
    else:
        bbox_lo, bbox_hi = tree.bbox
    meta: dict[str, tuple[str, bytes]] = {
        "name": _str_meta(grid.name),
        "file_compression": _str_meta(COMPRESSION_NAME),
        "file_bbox_min": ("vec3i", np.asarray(bbox_lo, "<i4").tobytes()),
        "file_bbox_max": ("vec3i", np.asarray(bbox_hi, "<i4").tobytes()),
        "file_voxel_count": ("int64", struct.pack("<q", int(tree.counts.sum()))),
        "file_mem_bytes": ("int64", struct.pack("<q", _mem_bytes(tree, n_upper, n_lower, value_size))),
        "is_saved_as_half_float": ("bool", b"\x00"),
    }
    if grid.grid_class is not None:
        meta["class"] = _str_meta(grid.grid_class)
    if value_shape == (3,):
        meta["vector_type"] = _str_meta("invariant")  # not transformed with the grid: a colour
    head = _string(grid.name) + _string(tree_type) + _string("")  # "": not an instance of another grid
    body = [struct.pack("<I", COMPRESS_ACTIVE_MASK), _meta_map(meta), _transform_bytes(grid.transform), *topology]
    return head, body, _buffers(tree)


def _file_header() -> bytes:
    return (
        struct.pack("<qIII", MAGIC, FILE_VERSION, *LIBRARY_VERSION)
        + b"\x01"  # has grid offsets: readers can seek to each grid
        + str(uuid.uuid4()).upper().encode("ascii")  # 36 characters, no length prefix
    )


def write_vdb_file(path: str | os.PathLike[str], grids: Sequence[VdbGrid], metadata: Mapping[str, str] | None = None) -> int:
    """Writes `grids` and the file-level string `metadata` to `path` (not atomically: callers that
    need that write to a temporary name and rename). Returns the file size in bytes."""
    names = [g.name for g in grids]
    if any(not n for n in names) or len(set(names)) != len(names):
        raise ValueError(f"grid names must be non-empty and unique, got {names}")
    file_meta = {str(k): _str_meta(str(v)) for k, v in (metadata or {}).items()}
    layouts: dict[tuple[int, bytes], _Layout] = {}
    parts = [_grid_parts(g, layouts) for g in grids]
    with open(path, "wb") as f:
        pos = f.write(_file_header() + _meta_map(file_meta) + struct.pack("<i", len(grids)))
        for head, body, buffers in parts:
            grid_pos = pos + len(head) + 3 * 8
            block_pos = grid_pos + sum(len(b) for b in body)
            end_pos = block_pos + buffers.nbytes
            f.write(head + struct.pack("<3q", grid_pos, block_pos, end_pos))
            f.writelines(body)
            f.write(buffers.data)
            pos = end_pos
    return pos
