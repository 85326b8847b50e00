"""Test PSNR on a realistic capture with the scene box, the lens distortion and a learned background
switched on in turn (issue 10's targets), each trained by the trainer's own command line.

    .venv/bin/python benchmarks/bench_real_capture.py [--data /tmp/realcap] [--preset fast] [--minutes 10]
        [--variants small-box,box,distortion,background] [--small-box '[[x,y,z],[x,y,z]]']
        [--threads N] [--test-views N] [--out DIR] [--set key=value ...] [--smoke]

The data: benchmarks/make_real_capture.py (a single colmap2nerf-style transforms.json with k1 k2 p1 p2
and aabb_scale), or any capture in that format. The variants, each adding one thing to the one before:

    small-box    no aabb_scale (so the trainer's box from the cameras, or --small-box), lens ignored,
                 a fixed background colour (`--set background_model=color`)
    box          the file's aabb_scale box, lens ignored, fixed background
    distortion   + the lens distortion (k1 k2 k3 k4 p1 p2) as the file gives it, fixed background
    background   + `--set background_model=envmap` (the learnt background the trainer picks by itself for
                 images without alpha)

A variant runs on a copy of the dataset folder (its images linked, not copied) whose transforms files lack
the keys it switches off, so the trainer needs no option for them. A trainer that rejects a variant's
config key gets one "not available in this trainer" line, and the other variants still run. Each variant
trains for at most --minutes of wall time (the trainer's max_minutes; the test evaluation comes after).

Prints the machine's state (cores, load) before and after, since on a shared machine the step counts
within the time limit depend on it, and one table: variant, box, steps, training s, the command's wall
s (loading and test evaluation included), test PSNR, SSIM.

--smoke runs every variant for a few dozen steps of the tiny preset on a small analytic sphere written as a
colmap2nerf-style file (tests/fixtures/scenes.py), in seconds, so that a test can check that this script
still runs against the trainer (tests/trainer/test_benchmarks_smoke.py); its figures mean nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

LENS_KEYS = ("k1", "k2", "k3", "k4", "p1", "p2", "is_fisheye", "camera_model")
BOX_KEYS = ("aabb_scale", "aabb", "scale", "offset")
VARIANTS = ("small-box", "box", "distortion", "background")
# the config keys each variant sets (beyond the dataset keys it keeps): the trainer learns a background by
# default for images without alpha, so the variants before "background" ask for the fixed colour
VARIANT_SETS = {"small-box": ["background_model=color"], "box": ["background_model=color"],
                "distortion": ["background_model=color"], "background": ["background_model=envmap"]}


@dataclass
class Row:
    variant: str
    box: str = "-"
    steps: int | None = None
    train_s: float | None = None    # the trainer's training time (metrics.json)
    wall_s: float | None = None     # the whole command: loading, training, test evaluation
    psnr: float | None = None
    ssim: float | None = None
    note: str = ""


def machine_state() -> str:
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    return f"{os.cpu_count()} cores, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"


def variant_meta(meta: dict, variant: str) -> dict:
    """The transforms file's content as `variant` sees it: the keys it switches off removed, from the
    file level and from every frame (colmap2nerf may write intrinsics per frame)."""
    drop: tuple[str, ...] = ()
    if variant in ("small-box", "box"):
        drop += LENS_KEYS
    if variant == "small-box":
        drop += BOX_KEYS
    out = {k: v for k, v in meta.items() if k not in drop}
    if isinstance(meta.get("frames"), list):
        out["frames"] = [{k: v for k, v in f.items() if k not in drop} if isinstance(f, dict) else f
                         for f in meta["frames"]]
    return out


def variant_dataset(data: Path, variant: str, dest: Path) -> Path:
    """A folder that reads as `data` with the variant's keys removed: rewritten transforms files, every
    other entry a symbolic link to the original."""
    dest.mkdir(parents=True)
    for entry in data.iterdir():
        if entry.name.startswith("transforms") and entry.suffix == ".json":
            meta = json.loads(entry.read_text(encoding="utf-8"))
            (dest / entry.name).write_text(json.dumps(variant_meta(meta, variant), indent=1))
        else:
            (dest / entry.name).symlink_to(entry.resolve(), target_is_directory=entry.is_dir())
    return dest


def box_text(metrics: dict) -> str:
    box = metrics.get("scene_box") or {}
    corners = box.get("box")
    if not corners:
        return "-"
    lo, hi = corners
    return ("[" + ",".join(f"{v:.2g}" for v in lo) + "]..[" + ",".join(f"{v:.2g}" for v in hi) + "] "
            + str(box.get("source", "")))


def train_variant(args: argparse.Namespace, variant: str, work: Path) -> Row:
    data = variant_dataset(args.data, variant, work / variant / "data")
    run = work / variant / "run"
    sets = [f"max_minutes={args.minutes}", *args.set]
    if variant == "small-box" and args.small_box:
        sets.append(f"scene_box={args.small_box}")
    for later in VARIANTS[: VARIANTS.index(variant) + 1]:
        sets += VARIANT_SETS.get(later, [])
    cmd = [sys.executable, "-m", "trainer", "train", "--data", str(data), "--out", str(run),
           "--preset", args.preset, "--progress", "none", "--test-views", str(args.test_views)]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    for item in sets:
        cmd += ["--set", item]
    print(f"[{variant}] {' '.join(cmd[1:])}", flush=True)
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t
    for line in proc.stderr.splitlines():
        if line.startswith(("scene box", "background:", "note:", "warning:")) or "scene box" in line:
            print(f"[{variant}]   {line}", flush=True)
    if proc.returncode != 0:
        unknown = re.search(r"unknown config key '([^']+)'", proc.stderr)
        if unknown:
            note = f"{unknown.group(1)} not available in this trainer"
        else:
            note = f"trainer exit {proc.returncode}: {(proc.stderr.strip().splitlines() or ['?'])[-1]}"
        print(f"[{variant}] {note}", flush=True)
        return Row(variant, wall_s=wall, note=note)
    metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    test = metrics["test"]
    return Row(variant, box_text(metrics), int(metrics["step"]), float(metrics["train_seconds"]), wall,
               float(test["psnr"]), float(test["ssim"]))


def print_table(rows: list[Row]) -> None:
    print(f"{'variant':<12} {'box':<44} {'steps':>6} {'train s':>8} {'wall s':>7} {'PSNR dB':>8} {'SSIM':>7}  note")
    for r in rows:
        steps = "-" if r.steps is None else str(r.steps)
        train = "-" if r.train_s is None else f"{r.train_s:.1f}"
        wall = "-" if r.wall_s is None else f"{r.wall_s:.1f}"
        psnr = "-" if r.psnr is None else f"{r.psnr:.2f}"
        ssim = "-" if r.ssim is None else f"{r.ssim:.4f}"
        print(f"{r.variant:<12} {r.box:<44} {steps:>6} {train:>8} {wall:>7} {psnr:>8} {ssim:>7}  {r.note}".rstrip(), flush=True)


def write_smoke_dataset(root: Path) -> None:
    """A small analytic sphere as one colmap2nerf-style transforms.json: aabb_scale instead of aabb, and
    a lens (the images are pinhole renders, so the figures are meaningless; the keys are what counts)."""
    sys.path.insert(0, str(REPO / "tests" / "fixtures"))
    from scenes import write_sphere_dataset

    write_sphere_dataset(root, n_train=12, n_test=2, width=24, height=24, seed=1)
    train = json.loads((root / "transforms_train.json").read_text())
    test = json.loads((root / "transforms_test.json").read_text())
    meta = {k: v for k, v in train.items() if k not in ("frames", "camera_angle_x", "blender_plenox")}
    meta.update({"k1": -0.05, "k2": 0.01, "p1": 0.0005, "p2": -0.0005, "aabb_scale": 1, "frames": []})
    # frames 0 and 8 are the trainer's holdout: put the test views there
    frames = train["frames"][:]
    frames.insert(0, test["frames"][0])
    frames.insert(8, test["frames"][1])
    meta["frames"] = frames
    (root / "transforms.json").write_text(json.dumps(meta, indent=1))
    for name in ("transforms_train.json", "transforms_test.json"):
        (root / name).unlink()


def benchmark(args: argparse.Namespace, work: Path) -> int:
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    bad = [v for v in variants if v not in VARIANTS]
    if bad:
        print(f"error: unknown variant(s) {', '.join(bad)} (known: {', '.join(VARIANTS)})", file=sys.stderr)
        return 2
    print(f"data {args.data}; preset {args.preset}, at most {args.minutes:g} min per variant; "
          f"machine: {machine_state()}", flush=True)
    rows = [train_variant(args, v, work) for v in variants]
    print(f"machine after: {machine_state()}")
    print_table(rows)
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("/tmp/realcap"))
    ap.add_argument("--preset", default="fast")
    ap.add_argument("--minutes", type=float, default=10.0, help="training wall-time limit per variant")
    ap.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, of {', '.join(VARIANTS)}")
    ap.add_argument("--small-box", default=None, metavar="JSON",
                    help="the small-box variant's box, [[xmin,ymin,zmin],[xmax,ymax,zmax]] (default: the trainer's "
                         "box from the cameras)")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: the trainer's default)")
    ap.add_argument("--test-views", type=int, default=0, help="evaluate at most N test views (0: all)")
    ap.add_argument("--out", type=Path, default=None, help="keep the runs here (default: a temporary folder)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="passed to every variant")
    ap.add_argument("--smoke", action="store_true", help="every variant for a few steps on a tiny sphere")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.smoke:
            args.data, args.preset, args.minutes = Path(tmp) / "sphere", "tiny", 1.0
            write_smoke_dataset(args.data)
            args.set = ["steps=40", "upsample_at=[20]", "prune_at=[10]", "log_every=10", *args.set]
        if not (args.data / "transforms.json").is_file() and not (args.data / "transforms_train.json").is_file():
            print(f"{args.data}: no capture there (make one with benchmarks/make_real_capture.py)")
            return 0
        work = args.out if args.out is not None else Path(tmp) / "runs"
        if work.exists() and any(work.iterdir()):
            print(f"error: {work} exists and is not empty", file=sys.stderr)
            return 2
        return benchmark(args, work)


if __name__ == "__main__":
    sys.exit(main())
