"""The numpy OpenVDB writer's file layout, checked without any OpenVDB library: byte offsets and
sizes against closed forms of the format, node masks against the 5-4-3 tree's index arithmetic,
and a round trip through a minimal reader written from the format description (OpenVDB's own
reader checks the same files in tests/blender/test_vdb_file.py)."""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from blender_plenox.io.vdb_arrays import VdbArrays
from blender_plenox.io.vdb_file import VdbGrid, write_vdb_file
from blender_plenox.volume.vdb_writer import vdb_grids

ROWS = [[0.5, 0, 0, 0], [0, 0.5, 0, 0], [0, 0, 0.5, 0], [1.0, 2.0, 3.0, 1]]
TOPOLOGY_ONE_LEAF = 4 + 4 + 8 + 12 + (4096 + 4096 + 1) + (512 + 512 + 1) + 64  # float grid, one leaf


class Reader:
    """Little-endian cursor over a file's bytes."""

    def __init__(self, data: bytes, pos: int = 0):
        self.data, self.pos = data, pos

    def take(self, n: int) -> bytes:
        out = self.data[self.pos : self.pos + n]
        assert len(out) == n, "read past the end of the file"
        self.pos += n
        return out

    def unpack(self, fmt: str):
        values = struct.unpack_from("<" + fmt, self.data, self.pos)
        self.pos += struct.calcsize("<" + fmt)
        return values if len(values) > 1 else values[0]

    def string(self) -> str:
        return self.take(self.unpack("I")).decode()

    def meta(self) -> dict[str, tuple[str, bytes]]:
        entries = {}
        for _ in range(self.unpack("i")):
            name, type_name = self.string(), self.string()
            entries[name] = (type_name, self.take(self.unpack("I")))
        return entries

    def bits(self, n_bits: int) -> np.ndarray:
        return np.unpackbits(np.frombuffer(self.take(n_bits // 8), np.uint8), bitorder="little").astype(bool)


@dataclass
class ParsedGrid:
    name: str
    tree_type: str
    positions: tuple[int, int, int]
    compression: int
    meta: dict[str, tuple[str, bytes]]
    map_type: str
    map_fields: np.ndarray
    background: np.ndarray
    root_children: list[tuple[int, int, int]] = field(default_factory=list)
    voxels: dict[tuple[int, int, int], np.ndarray] = field(default_factory=dict)


def parse(path) -> tuple[bytes, dict[str, tuple[str, bytes]], list[ParsedGrid]]:
    """Reads a file the writer made: header, metadata, every grid's topology and leaf values."""
    data = Path(path).read_bytes()
    r = Reader(data)
    header = r.take(8 + 4 + 8 + 1 + 36)
    file_meta = r.meta()
    grids = []
    for _ in range(r.unpack("i")):
        name, tree_type, parent = r.string(), r.string(), r.string()
        assert parent == ""
        positions = r.unpack("3q")
        assert r.pos == positions[0], "grid position: right after the descriptor"
        comps = 3 if tree_type == "Tree_vec3s_5_4_3" else 1
        compression, meta = r.unpack("I"), r.meta()
        map_type = r.string()
        n_fields = 16 if map_type == "AffineMap" else 18
        map_fields = np.frombuffer(r.take(8 * n_fields), "<f8")
        assert r.unpack("i") == 1  # buffer count
        background = np.frombuffer(r.take(4 * comps), "<f4")
        n_tiles, n_children = r.unpack("2I")
        assert n_tiles == 0
        g = ParsedGrid(name, tree_type, positions, compression, meta, map_type, map_fields, background)
        leaves = []  # (origin, mask) in topology order
        for _ in range(n_children):
            origin = np.array(r.unpack("3i"))
            g.root_children.append(tuple(int(v) for v in origin))
            _read_internal(r, origin, 5, 7, leaves)
        assert r.pos == positions[1], "block position: right after the topology"
        for origin, mask in leaves:
            assert np.array_equal(r.bits(512), mask), "a leaf's buffer repeats its topology mask"
            assert r.take(1) == b"\x00"  # NO_MASK_OR_INACTIVE_VALS: only active values follow
            on = np.flatnonzero(mask)
            values = np.frombuffer(r.take(4 * comps * len(on)), "<f4").reshape(len(on), comps)
            for n, v in zip(on, values):
                ijk = origin + [n >> 6, (n >> 3) & 7, n & 7]
                g.voxels[tuple(int(c) for c in ijk)] = v
        assert r.pos == positions[2], "end position: right after the buffers"
        grids.append(g)
    assert r.pos == len(data)
    return header, file_meta, grids


def _read_internal(r: Reader, origin: np.ndarray, log2: int, child_shift: int, leaves: list) -> None:
    """An internal node's topology: child mask, value mask, its (empty) compressed tiles, children."""
    dim = 1 << log2
    child_mask = r.bits(dim**3)
    assert not r.bits(dim**3).any(), "no active tiles"
    assert r.take(1) == b"\x00"  # every tile is the background; no tile values stored
    for n in np.flatnonzero(child_mask):
        local = np.array([n >> (2 * log2), (n >> log2) & (dim - 1), n & (dim - 1)])
        child_origin = origin + (local << child_shift)
        if child_shift == 3:
            leaves.append((child_origin, r.bits(512)))
        else:
            _read_internal(r, child_origin, 4, 3, leaves)


def _expected_voxels(values: np.ndarray, offset, active: np.ndarray) -> dict:
    return {tuple(int(c) for c in ijk + offset): values[tuple(ijk)].reshape(-1) for ijk in np.argwhere(active)}


def test_header_names_the_format_and_a_fresh_uuid(tmp_path):
    write_vdb_file(tmp_path / "a.vdb", [], {"source": "x"})
    write_vdb_file(tmp_path / "b.vdb", [])
    a, b = ((tmp_path / f).read_bytes() for f in ("a.vdb", "b.vdb"))
    assert a[:8] == b" BDV\x00\x00\x00\x00"  # OPENVDB_MAGIC 0x56444220 as int64
    assert struct.unpack_from("<I", a, 8)[0] == 224
    assert a[20] == 1  # grid offsets present
    assert re.fullmatch(rb"[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}", a[21:57])
    assert a[21:57] != b[21:57]
    _, meta, grids = parse(tmp_path / "a.vdb")
    assert meta == {"source": ("string", b"x")} and grids == []


def test_one_voxel_file_has_the_closed_form_layout(tmp_path):
    """A single voxel at negative coordinates: one node per level, masks set at the computed bits."""
    ijk = np.array([-5, 130, -4097])
    block = np.zeros((2, 2, 2), np.float32)
    block[1, 0, 1] = 2.5
    offset = ijk - [1, 0, 1]
    size = write_vdb_file(tmp_path / "one.vdb", [VdbGrid("d", block, offset, ROWS, 0.0, "fog volume")])
    data = (tmp_path / "one.vdb").read_bytes()
    assert size == len(data)
    _, _, (g,) = parse(tmp_path / "one.vdb")
    _, block_pos, end_pos = g.positions
    assert end_pos - block_pos == 64 + 1 + 4  # mask, flag, one float
    topology = block_pos - TOPOLOGY_ONE_LEAF
    assert struct.unpack_from("<i4x2I3i", data, topology) == (1, 0, 1, -4096, 0, -8192)  # root child
    upper_mask = np.unpackbits(np.frombuffer(data, np.uint8, 4096, topology + 28), bitorder="little")
    lower_mask = np.unpackbits(np.frombuffer(data, np.uint8, 512, topology + 28 + 8193), bitorder="little")
    leaf_mask = np.unpackbits(np.frombuffer(data, np.uint8, 64, topology + 28 + 8193 + 1025), bitorder="little")
    # Slot of each child in its parent: local index per axis, x-major.
    up = (ijk >> 7) & 31
    lo = (ijk >> 3) & 15
    vx = ijk & 7
    assert np.flatnonzero(upper_mask).tolist() == [(up[0] << 10) | (up[1] << 5) | up[2]]
    assert np.flatnonzero(lower_mask).tolist() == [(lo[0] << 8) | (lo[1] << 4) | lo[2]]
    assert np.flatnonzero(leaf_mask).tolist() == [(vx[0] << 6) | (vx[1] << 3) | vx[2]]
    assert np.frombuffer(data, "<f4", 1, end_pos - 4)[0] == np.float32(2.5)
    assert g.voxels == {tuple(int(c) for c in ijk): pytest.approx([2.5])}
    assert g.meta["file_bbox_min"] == g.meta["file_bbox_max"] == ("vec3i", ijk.astype("<i4").tobytes())
    assert g.meta["file_voxel_count"] == ("int64", struct.pack("<q", 1))
    assert g.meta["class"] == ("string", b"fog volume")
    assert g.meta["file_compression"] == ("string", b"active values") and g.compression == 0x2
    assert list(g.meta) == sorted(g.meta)


@pytest.mark.parametrize("offset", [(0, 0, 0), (-5, 3, -9), (-4100, 120, 4090), (4000, -200, -130)])
def test_sparse_blocks_round_trip_with_depth_first_node_order(tmp_path, offset):
    rng = np.random.default_rng(abs(sum(offset)))
    shape = (150, 40, 70)  # crosses leaf, lower (128) and, at some offsets, upper (4096) node borders
    density = np.where(rng.random(shape) < 0.03, rng.normal(size=shape), 0.0).astype(np.float32)
    colour = np.full((*shape, 3), 0.5, np.float32)
    picked = rng.random(shape) < 0.03
    colour[picked] = rng.normal(size=(int(picked.sum()), 3))
    colour[picked & (rng.random(shape) < 0.3), 1] = 0.5  # one component equal to the background: still active
    write_vdb_file(
        tmp_path / "s.vdb",
        [VdbGrid("density", density, offset, ROWS, 0.0, "fog volume"),
         VdbGrid("color", colour, offset, ([0.5, 0.25, 0.5], [1, 2, 3]), (0.5, 0.5, 0.5))],
        {"k": "v"},
    )
    _, meta, (d, c) = parse(tmp_path / "s.vdb")
    assert meta == {"k": ("string", b"v")}
    assert (d.tree_type, c.tree_type) == ("Tree_float_5_4_3", "Tree_vec3s_5_4_3")
    assert d.root_children == sorted(d.root_children)  # the root's table is ordered by origin
    assert d.root_children == sorted({tuple(int(v) for v in (np.array(k) >> 12) << 12) for k in d.voxels})
    for parsed, values, bg, active in (
        (d, density, 0.0, density != 0.0),
        (c, colour, 0.5, (colour != 0.5).any(-1)),
    ):
        expected = _expected_voxels(values, np.array(offset), active)
        assert parsed.voxels.keys() == expected.keys()
        assert all(np.array_equal(parsed.voxels[k], expected[k]) for k in expected)  # float32 bits kept
        assert np.all(parsed.background == bg)
        coords = np.array(list(expected))
        assert parsed.meta["file_bbox_min"][1] == coords.min(0).astype("<i4").tobytes()
        assert parsed.meta["file_bbox_max"][1] == coords.max(0).astype("<i4").tobytes()
    assert c.meta["vector_type"] == ("string", b"invariant") and "class" not in c.meta


def test_all_background_grids_make_a_valid_empty_tree(tmp_path):
    write_vdb_file(
        tmp_path / "e.vdb",
        [VdbGrid("density", np.zeros((4, 4, 4), np.float32), (-3, 0, 0), ROWS, 0.0, "fog volume"),
         VdbGrid("color", np.full((4, 4, 4, 3), 0.5, np.float32), (0, 0, 0), ROWS, (0.5, 0.5, 0.5))],
    )
    _, _, grids = parse(tmp_path / "e.vdb")
    for g in grids:
        assert g.root_children == [] and g.voxels == {}
        assert g.positions[1] == g.positions[2]  # no buffers
        # What OpenVDB writes for an empty tree's bounds: an inverted box.
        assert g.meta["file_bbox_min"][1] == struct.pack("<3i", *[2**31 - 1] * 3)
        assert g.meta["file_bbox_max"][1] == struct.pack("<3i", *[-(2**31)] * 3)


def test_an_explicit_active_mask_keeps_background_values_and_drops_others(tmp_path):
    values = np.zeros((3, 3, 3), np.float32)
    values[2, 2, 2] = 7.0  # not in the mask: reads back as the background
    active = np.zeros((3, 3, 3), bool)
    active[0, 1, 2] = True  # holds the background value, but active
    write_vdb_file(tmp_path / "m.vdb", [VdbGrid("d", values, (10, 10, 10), ROWS, active=active)])
    _, _, (g,) = parse(tmp_path / "m.vdb")
    assert g.voxels == {(10, 11, 12): pytest.approx([0.0])}


@pytest.mark.parametrize(
    ("transform", "map_type"),
    [
        (ROWS, "UniformScaleTranslateMap"),
        (([0.5, -0.25, 2.0], [1, 2, 3]), "ScaleTranslateMap"),
        ([[0, 0.5, 0, 0], [-0.5, 0, 0, 0], [0, 0, 0.5, 0], [1, 2, 3, 1]], "AffineMap"),
    ],
)
def test_transform_fields_follow_the_map_type(tmp_path, transform, map_type):
    write_vdb_file(tmp_path / "t.vdb", [VdbGrid("d", np.ones((1, 1, 1), np.float32), (0, 0, 0), transform)])
    _, _, (g,) = parse(tmp_path / "t.vdb")
    assert g.map_type == map_type
    if map_type == "AffineMap":
        np.testing.assert_array_equal(g.map_fields.reshape(4, 4), transform)
        return
    m = np.asarray(transform, float)
    scale, translation = (np.diag(m[:3, :3]), m[3, :3]) if m.shape == (4, 4) else (m[0], m[1])
    # ScaleTranslateMap stores translation, scale, |scale|, 1/scale, 1/scale², 1/(2·scale).
    expected = [translation, scale, np.abs(scale), 1 / scale, 1 / scale**2, 0.5 / scale]
    np.testing.assert_allclose(g.map_fields.reshape(6, 3), expected, rtol=1e-15)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"values": np.zeros((2, 2), np.float32)}, "values must be"),
        ({"values": np.zeros((2, 2, 2, 2), np.float32)}, "values must be"),
        ({"background": (0.0, 0.0, 0.0)}, "background shape"),
        ({"transform": np.eye(3)}, "4×4 rows"),
        ({"transform": [[1, 0, 0, 1], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]}, "not affine"),
        ({"transform": ([1, 0, 1], [0, 0, 0])}, "zero scale"),
        ({"transform": [[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]}, "singular"),
        ({"offset": (2**31 - 1, 0, 0)}, "int32"),  # its last voxel would be 2³¹
        ({"active": np.ones((3, 3, 3), bool)}, "active mask shape"),
    ],
)
def test_bad_grids_are_refused(tmp_path, kwargs, message):
    base = {"name": "d", "values": np.ones((2, 2, 2), np.float32), "offset": (0, 0, 0), "transform": ROWS}
    with pytest.raises(ValueError, match=message):
        write_vdb_file(tmp_path / "x.vdb", [VdbGrid(**{**base, **kwargs})])


def test_grid_names_must_be_unique_and_non_empty(tmp_path):
    g = VdbGrid("d", np.ones((1, 1, 1), np.float32), (0, 0, 0), ROWS)
    for grids in ([g, g], [VdbGrid("", g.values, g.offset, ROWS)]):
        with pytest.raises(ValueError, match="unique"):
            write_vdb_file(tmp_path / "x.vdb", grids)


def _arrays(density: np.ndarray, colour: np.ndarray) -> VdbArrays:
    return VdbArrays(density, colour, np.array([-2, 0, 5]), np.full(3, 0.25), np.zeros(3), 0.5, int((density != 0).sum()))


def test_colour_stays_active_wherever_density_is_even_when_it_equals_the_background(tmp_path):
    """A grey volume (every colour 0.5, the colour background) must not give an empty colour grid."""
    density = np.zeros((4, 4, 4), np.float32)
    density[1:3, 1:3, 1:3] = 3.0
    density[0, 0, 0] = -1.0  # a signed value is active too
    colour = np.full((4, 4, 4, 3), 0.5, np.float32)
    colour[3, 3, 3] = (0.2, 0.5, 0.5)  # a colour off the background, where density is 0: active as before
    write_vdb_file(tmp_path / "c.vdb", vdb_grids(_arrays(density, colour)))
    _, _, (d, c) = parse(tmp_path / "c.vdb")
    expected_density = {(i - 2, j, k + 5) for i, j, k in np.argwhere(density != 0)}
    assert set(d.voxels) == expected_density
    assert set(c.voxels) == expected_density | {(1, 3, 8)}
    assert all(np.array_equal(c.voxels[k], [0.5, 0.5, 0.5]) for k in expected_density)


def test_sparse_values_write_the_same_grid_as_a_dense_block(tmp_path):
    """Values given per active voxel (the mask's C order), as the SH grids are, give the same voxels
    as the dense block; grids sharing one mask object share its layout and still keep their values."""
    rng = np.random.default_rng(7)
    active = rng.random((9, 17, 6)) < 0.3
    dense = rng.normal(size=(9, 17, 6, 3)).astype(np.float32)
    dense[~active] = 0.0
    dense[np.argwhere(active)[0].tolist()] = 0.0  # an active voxel equal to the background stays active
    other = rng.normal(size=(int(active.sum()), 3)).astype(np.float32)
    transform = ([0.5, 0.5, 0.5], [1.0, 2.0, 3.0])
    grids = [
        VdbGrid("dense", dense, (-5, 3, 100), transform, (0.0, 0.0, 0.0), active=active),
        VdbGrid("sparse", dense[active], (-5, 3, 100), transform, (0.0, 0.0, 0.0), active=active),
        VdbGrid("other", other, (-5, 3, 100), transform, (0.0, 0.0, 0.0), active=active),
    ]
    write_vdb_file(tmp_path / "s.vdb", grids)
    _, _, (a, b, c) = parse(tmp_path / "s.vdb")
    expected = {tuple(int(v) for v in ijk + [-5, 3, 100]): dense[tuple(ijk)] for ijk in np.argwhere(active)}
    assert set(a.voxels) == set(b.voxels) == set(c.voxels) == set(expected)
    for key, value in expected.items():
        np.testing.assert_array_equal(a.voxels[key], value)
        np.testing.assert_array_equal(b.voxels[key], value)
    rows = {tuple(int(v) for v in ijk + [-5, 3, 100]): i for i, ijk in enumerate(np.argwhere(active))}
    for key, row in rows.items():
        np.testing.assert_array_equal(c.voxels[key], other[row])
    with pytest.raises(ValueError, match="values for"):
        write_vdb_file(tmp_path / "bad.vdb", [VdbGrid("x", other[:-1], (0, 0, 0), transform, (0.0, 0.0, 0.0), active=active)])
