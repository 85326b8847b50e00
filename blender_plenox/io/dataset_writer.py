"""Writes a dataset directory in the format of contract 1 (docs/CONTRACTS.md): NeRF-synthetic
transforms files with exact intrinsics and an aabb. No bpy: the images are rendered by the caller into
the paths this writer hands out, and the transforms files are rewritten after each view, so a capture
that stops early leaves a valid dataset of the views it finished.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ..utils.camera_math import Intrinsics

DATASET_VERSION = 1
SPLITS = ("train", "test")


class DatasetExistsError(FileExistsError):
    """The output folder already holds files and overwriting was not asked for."""


def split_of(index: int, test_every: int) -> str:
    """Every test_every-th view (counting from the first, index 0) goes to the test split; 0 means
    no test views."""
    if test_every < 0:
        raise ValueError(f"test_every must be ≥ 0, not {test_every}")
    return "test" if test_every > 0 and index % test_every == test_every - 1 else "train"


def aabb_with_margin(points: npt.ArrayLike, margin: float = 0.05) -> list[list[float]]:
    """World-space box around points, grown on every side by `margin` times its largest extent (so a
    flat object still gets a box with volume)."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    if pts.shape[0] == 0:
        raise ValueError("no points to bound: nothing to capture")
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    pad = margin * max(float((hi - lo).max()), 1e-3)
    return [(lo - pad).tolist(), (hi + pad).tolist()]


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to a temporary file beside `path`, then rename it over `path`, so readers never see
    a half-written file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def check_directory(root: Path, overwrite: bool = False) -> None:
    """Refuse a path that is a file, or a folder that already holds anything unless `overwrite`."""
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise DatasetExistsError(f"{root}: exists and is not a folder")
    if root.is_dir() and any(root.iterdir()) and not overwrite:
        raise DatasetExistsError(f"{root}: folder is not empty; choose another or allow overwriting")


def prepare_directory(root: Path, overwrite: bool = False) -> None:
    """Create the dataset folder. A folder that already holds anything is refused unless `overwrite`;
    then only what a dataset consists of (transforms files, train/ and test/) is removed, never other
    files the user keeps there."""
    root = Path(root)
    check_directory(root, overwrite)
    if root.is_dir() and any(root.iterdir()):
        for name in ("transforms.json", "transforms_train.json", "transforms_test.json", "transforms_val.json"):
            (root / name).unlink(missing_ok=True)
        for split in SPLITS:
            if (root / split).is_dir():
                shutil.rmtree(root / split)
    for split in SPLITS:
        (root / split).mkdir(parents=True, exist_ok=True)


@dataclass
class DatasetWriter:
    """Collects views and keeps transforms_train.json / transforms_test.json up to date on disk."""

    root: Path
    aabb: list[list[float]]
    test_every: int = 8
    metadata: dict[str, Any] = field(default_factory=dict)
    frames: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: {s: [] for s in SPLITS})
    intrinsics: Intrinsics | None = None
    count: int = 0

    def __post_init__(self) -> None:
        self.root = Path(self.root)

    def next_view(self) -> tuple[str, Path]:
        """Split and absolute image path (PNG) for the next view to render."""
        split = split_of(self.count, self.test_every)
        index = len(self.frames[split])
        return split, self.root / split / f"r_{index}.png"

    def add_view(self, c2w: npt.ArrayLike, intr: Intrinsics, extra: dict[str, Any] | None = None) -> str:
        """Record the view whose image was just written to next_view()'s path; returns its split."""
        split, image = self.next_view()
        if not image.is_file():
            raise FileNotFoundError(f"{image}: the rendered image is missing")
        matrix = np.asarray(c2w, dtype=np.float64).reshape(4, 4)
        frame: dict[str, Any] = {
            "file_path": f"./{split}/{image.stem}",
            "transform_matrix": matrix.tolist(),
        }
        if self.intrinsics is None:
            self.intrinsics = intr
        elif intr != self.intrinsics:
            # cameras from a collection may differ in lens: per-frame intrinsics override the file's
            frame.update(intr.as_dict())
            frame["camera_angle_x"] = intr.camera_angle_x
        if extra:
            frame.update(extra)
        self.frames[split].append(frame)
        self.count += 1
        self.flush()
        return split

    def document(self, split: str) -> dict[str, Any]:
        intr = self.intrinsics
        doc: dict[str, Any] = {}
        if intr is not None:
            doc["camera_angle_x"] = intr.camera_angle_x
            doc.update(intr.as_dict())
        doc["aabb"] = self.aabb
        doc["blender_plenox"] = {"version": DATASET_VERSION, **self.metadata}
        doc["frames"] = self.frames[split]
        return doc

    def flush(self) -> None:
        for split in SPLITS:
            write_json_atomic(self.root / f"transforms_{split}.json", self.document(split))

    def written(self) -> list[str]:
        """Relative paths of the views written so far, train first."""
        return [f["file_path"] for split in SPLITS for f in self.frames[split]]
