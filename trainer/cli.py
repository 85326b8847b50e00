"""`python -m trainer`: train, eval, render and info (contract 2).

Exit codes: 0 success, 1 failure during training, 2 bad input, 130 interrupted (Ctrl-C, SIGTERM or,
on Windows, CTRL_BREAK, after the training loop has written a checkpoint). Every failure is one line on stderr,
`error: <file or step>: <problem>`, and with `--progress json` also an `error` event on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, NoReturn

from trainer import __version__
from trainer.devices import DEVICE_CHOICES, DeviceError, describe_device, resolve_device
from trainer.io.config_io import (
    ConfigError,
    build_config,
    config_from_file,
    config_to_json,
    read_json_object,
    save_config,
    write_json,
)
from trainer.io.events import BarEventSink, EventSink, JsonEventSink, NullEventSink, to_json_value
from trainer.io.gridfile import GridFileError, grid_summary, load_grid

if TYPE_CHECKING:
    import torch

    from trainer.config import TrainConfig
    from trainer.engine.grid import SparseGrid
    from trainer.io.data import Dataset, Split
    from trainer.io.outputs import RenderFn

EXIT_TRAINING, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 1, 2, 130


class UsageError(ValueError):
    """Bad input that is not a file's fault; str(e) is one line naming the option."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # argparse prints usage plus a message; contract 2 promises a single line.
        print(f"error: {self.prog}: {message}", file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def make_sink(kind: str) -> EventSink:
    return {"json": JsonEventSink, "bar": BarEventSink, "none": NullEventSink}[kind]()


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def stop_signals() -> list[int]:
    """The signals that cancel a run besides Ctrl-C: SIGTERM (the add-on on POSIX, job schedulers,
    `kill`) and, on Windows, SIGBREAK (CTRL_BREAK_EVENT, which the add-on sends to cancel there)."""
    found = [signal.SIGTERM, getattr(signal, "SIGBREAK", None)]
    return [s for s in found if s is not None]


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM or SIGBREAK raises KeyboardInterrupt in the main thread, so the training loop's Ctrl-C
    path writes its checkpoint. Further stop signals are ignored meanwhile, so that a second cancel
    cannot tear that write; SIGKILL (TerminateProcess on Windows) still ends the process."""
    signums = stop_signals()

    def handler(signum: int, frame: FrameType | None) -> None:
        for s in signums:
            signal.signal(s, signal.SIG_IGN)
        raise KeyboardInterrupt(f"signal {signum}")

    previous = {s: signal.signal(s, handler) for s in signums}
    try:
        yield
    finally:
        for s, old in previous.items():
            signal.signal(s, old)


# ---------------------------------------------------------------------------------------------------
# Shared by train, eval and render


def _render_fn(grid: SparseGrid, cfg: TrainConfig, dc_only: bool = False) -> RenderFn:
    from trainer.engine.render import RenderOptions, render_image

    opts = RenderOptions(step_size=cfg.step_size, stop_transmittance=cfg.stop_transmittance, dc_only=dc_only)

    def render(c2w: torch.Tensor, intrinsics: torch.Tensor, width: int, height: int) -> torch.Tensor:
        return render_image(grid, c2w, intrinsics, width, height, cfg.background, dc_only=dc_only,
                            chunk=cfg.eval_chunk, opts=opts, supersample=cfg.eval_supersample)

    return render


def _evaluate(grid: SparseGrid, cfg: TrainConfig, split: Split, limit: int, renders_dir: Path | None,
              sink: EventSink, step: int, split_name: str = "test") -> dict[str, Any]:
    from trainer.io.outputs import evaluate_views, subset

    views = subset(len(split.paths), limit)
    sink.emit("stage", name="eval", step=step, message=f"rendering {len(views)} {split_name} views")
    result = evaluate_views(_render_fn(grid, cfg), split.images, split.c2w, split.intrinsics, views, renders_dir)
    for row in result["per_view"]:
        row["image"] = str(split.paths[row["view"]])
    return result


def _load_data(root: Path, cfg: TrainConfig) -> Dataset:
    from trainer.io.data import load_dataset

    start = time.time()
    data = load_dataset(root, downscale=cfg.downscale, background=tuple(cfg.background),  # type: ignore[arg-type]
                        color_space=cfg.color_space)
    for note in data.notes:   # missing images skipped, a test split without images held out, ...
        log(note)
    log(f"loaded {root}: {len(data.train.paths)} train and {len(data.test.paths)} test views at "
        f"{data.train.width}x{data.train.height} in {time.time() - start:.1f} s")
    return data


def _run_paths(run: Path) -> tuple[TrainConfig, dict[str, Any]]:
    if not run.is_dir():
        raise UsageError(f"{run}: no such run directory")
    cfg = config_from_file(run / "config.json")
    info_path = run / "run.json"
    info = read_json_object(info_path) if info_path.is_file() else {}
    return cfg, info


def _data_dir(given: str | None, info: dict[str, Any], run: Path) -> Path:
    if given:
        return Path(given)
    if isinstance(info.get("data"), str):
        return Path(info["data"])
    if not info:
        raise UsageError("--data: required")
    raise UsageError(f"{run}/run.json: no dataset recorded; pass --data DIR")


def _load_run_grid(run: Path, device: torch.device) -> tuple[SparseGrid, dict[str, Any]]:
    from trainer.engine.grid import SparseGrid

    data = load_grid(run / "grid.npz")
    return SparseGrid.from_grid_data(data, device), data.metadata


# ---------------------------------------------------------------------------------------------------
# train


def cmd_train(args: argparse.Namespace) -> int:
    from trainer.parent_watch import watch_parent, watch_stop_file

    with sigterm_as_interrupt():
        watch_parent()
        watch_stop_file()
        try:
            return _train(args)
        except KeyboardInterrupt:
            out = Path(args.out)
            if (out / "checkpoint.pt").is_file():
                raise _Interrupted(f"{out / 'checkpoint.pt'}: interrupted; `--resume` continues from it") from None
            raise _Interrupted(f"{out}: interrupted before the first checkpoint") from None


def _remove_stale_results(out: Path, written: set[str], since: float) -> None:
    """After a finished run: drop test renders it did not write and a live-preview snapshot older
    than it, left by an earlier run in the same folder (--force), so every result file there is
    this run's. Only names the trainer itself writes are touched."""
    for path in (out / "renders").glob("test_*.png"):
        if path.name not in written:
            path.unlink()
    snapshot = out / "snapshot.npz"
    if snapshot.is_file() and snapshot.stat().st_mtime < since:
        snapshot.unlink()


def _train(args: argparse.Namespace) -> int:
    out = Path(args.out)
    sink = args.sink
    run_info: dict[str, Any] = {}
    base = None
    if args.resume:
        if args.force:
            raise UsageError("--resume and --force: choose one")
        if args.preset:
            log(f"--preset {args.preset}: ignored with --resume; the run's config.json is the base")
        if not (out / "config.json").is_file():
            raise UsageError(f"{out}/config.json: nothing to resume")
        base, run_info = _run_paths(out)
    elif out.exists() and (not out.is_dir() or any(out.iterdir())) and not args.force:
        raise UsageError(f"{out}: exists; pass --resume to continue that run or --force to replace its results")
    flags = [f"{k}={v}" for k, v in (("device", args.device), ("seed", args.seed), ("downscale", args.downscale))
             if v is not None]
    cfg = build_config(args.preset or "default", base, Path(args.config) if args.config else None,
                       list(args.set) + flags)
    data_root = _data_dir(args.data, run_info, out).resolve()
    from trainer.engine.grid import SparseGrid  # torch loads here, after the quick checks
    from trainer.io.gridfile import save_grid
    from trainer.train import TrainingError, background_choice, run_training, scene_box_for

    device = resolve_device(cfg.device)
    data = _load_data(data_root, cfg)
    box = scene_box_for(cfg, data)
    corners = ", ".join("[" + ", ".join(f"{v:.4g}" for v in corner) + "]" for corner in box.box.tolist())
    log(f"scene box [{corners}] from {box.source}: {box.reason}")
    log(f"background: {background_choice(cfg, data.train.has_alpha)}")
    about = describe_device(device)
    threads = about.get("threads")  # CPU only
    log(f"device: {about['name']}" + (f", {threads} thread{'s' * (threads != 1)}" if threads else ""))

    out.mkdir(parents=True, exist_ok=True)
    save_config(out / "config.json", cfg)
    write_json(out / "run.json", {"data": str(data_root), "trainer_version": __version__,
                                  "created": run_info.get("created", now_iso()), "updated": now_iso(),
                                  "command": sys.argv[1:] if args.argv is None else args.argv})
    resume = bool(args.resume) and (out / "checkpoint.pt").is_file()
    if args.resume and not resume:
        log(f"{out}/checkpoint.pt: none yet, starting the run from step 0 with its config.json")
    start = time.time()
    try:
        result = run_training(cfg, data, out, sink, resume=resume, device=device, box=box)
    except TrainingError as e:
        raise _TrainingFailed(str(e)) from None
    if result.step < cfg.steps:  # (the presets fast and default carry a limit of their own)
        log(f"stopped by the time limit (max_minutes={cfg.max_minutes:g}) at step {result.step} of {cfg.steps}, "
            "with the learning rates at their end")

    metadata = {"step": result.step, "psnr": None, "config": config_to_json(cfg),
                "created": now_iso(), "trainer_version": __version__, "data": str(data_root)}
    grid_data = result.grid.to_grid_data(metadata)
    # Evaluate the grid as read back from what the file holds (float32 values, the file's box), which is
    # what Blender and `eval` see; with contract 4 v2 this equals the training grid's own render.
    exported = SparseGrid.from_grid_data(grid_data, device)
    test = _evaluate(exported, cfg, data.test, args.test_views, out / "renders", sink, result.step)
    grid_data.metadata["psnr"] = test["psnr"]
    save_grid(out / "grid.npz", grid_data)
    metrics = {
        "test": test,
        "step": result.step,
        "train_seconds": result.elapsed,
        "total_seconds": time.time() - start,
        "voxels": int(result.grid.n_active),
        "resolution": list(result.grid.resolution),
        "device": str(device),
        **({"threads": threads} if threads else {}),
        **result.stats,   # the training loop's figures, e.g. "stages": rays/s, peak memory, pruning
        "trainer_version": __version__,
        "created": now_iso(),
    }
    write_json(out / "metrics.json", to_json_value(metrics))
    _remove_stale_results(out, {row["file"] for row in test["per_view"]}, start)
    sink.emit("done", grid=out / "grid.npz", metrics=out / "metrics.json", psnr=test["psnr"], ssim=test["ssim"],
              step=result.step, elapsed=time.time() - start)
    return 0


# ---------------------------------------------------------------------------------------------------
# eval, render, info


def cmd_eval(args: argparse.Namespace) -> int:
    run = Path(args.run)
    cfg, info = _run_paths(run)
    device = resolve_device(args.device or cfg.device)
    grid, metadata = _load_run_grid(run, device)
    data = _load_data(_data_dir(args.data, info, run).resolve(), cfg)
    split = data.test if args.split == "test" else data.train
    with sigterm_as_interrupt():
        try:
            result = _evaluate(grid, cfg, split, args.test_views, None, args.sink, int(metadata.get("step", 0)),
                               args.split)
        except KeyboardInterrupt:
            raise _Interrupted(f"{run}: evaluation interrupted") from None
    metrics_path = run / "metrics.json"
    metrics = read_json_object(metrics_path) if metrics_path.is_file() else {}
    metrics[args.split] = result
    metrics["evaluated"] = now_iso()
    write_json(metrics_path, to_json_value(metrics))
    print(f"{args.split}: PSNR {result['psnr']:.2f} dB, SSIM {result['ssim']:.4f} over {result['views']} views"
          f" ({metrics_path})")
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    import math

    from trainer.io.orbit import content_box, fit_distance, orbit_poses, pinhole_intrinsics
    from trainer.io.outputs import to_uint8, write_gif, write_png

    run = Path(args.run)
    cfg, info = _run_paths(run)
    device = resolve_device(args.device or cfg.device)
    grid, _ = _load_run_grid(run, device)
    render = _render_fn(grid, cfg, dc_only=args.dc_only)
    suffix = "_dc" if args.dc_only else ""
    out = Path(args.out) if args.out else run / (f"renders{suffix}" if args.views == "test" else f"orbit{suffix}")
    with sigterm_as_interrupt():
        try:
            if args.views == "test":
                data = _load_data(_data_dir(args.data, info, run).resolve(), cfg)
                split = data.test
                args.sink.emit("stage", name="render", message=f"{len(split.paths)} test views to {out}")
                for i in range(len(split.paths)):
                    write_png(out / f"test_{i:03d}.png",
                              render(split.c2w[i], split.intrinsics[i], split.width, split.height))
                log(f"wrote {len(split.paths)} test views to {out}")
            else:
                aabb = content_box(grid)
                fov = math.radians(args.fov)
                size = args.size
                poses = orbit_poses(aabb, args.frames, args.distance or fit_distance(aabb, fov), args.elevation)
                intrinsics = pinhole_intrinsics(size, size, fov)
                args.sink.emit("stage", name="render", message=f"{args.frames} orbit views to {out}")
                frames = []
                for i, c2w in enumerate(poses):
                    img = render(c2w, intrinsics, size, size)
                    write_png(out / f"orbit_{i:03d}.png", img)
                    frames.append(to_uint8(img))
                write_gif(out / "orbit.gif", frames, fps=args.fps)
                log(f"wrote {len(frames)} orbit views and orbit.gif to {out}")
        except KeyboardInterrupt:
            raise _Interrupted(f"{out}: rendering interrupted") from None
    return 0


def _run_summary(run: Path) -> dict[str, Any]:
    # "path", not "run": run.json's contents go under "run"
    summary: dict[str, Any] = {"path": str(run)}
    for name in ("config", "run", "metrics"):
        path = run / f"{name}.json"
        if path.is_file():
            summary[name] = read_json_object(path)
    if "metrics" in summary:
        for split in ("test", "train"):
            if isinstance(summary["metrics"].get(split), dict):
                summary["metrics"][split].pop("per_view", None)
    checkpoint = run / "checkpoint.pt"
    if checkpoint.is_file():
        summary["checkpoint"] = {"path": str(checkpoint), "bytes": checkpoint.stat().st_size,
                                 "modified": datetime.fromtimestamp(checkpoint.stat().st_mtime, UTC)
                                 .strftime("%Y-%m-%dT%H:%M:%SZ")}
    if (run / "grid.npz").is_file():
        summary["grid"] = grid_summary(load_grid(run / "grid.npz"))
    if len(summary) == 1:
        raise UsageError(f"{run}: not a run directory (no config.json, metrics.json or grid.npz)")
    return summary


def _print_summary(summary: dict[str, Any], indent: str = "") -> None:
    for key, value in summary.items():
        if isinstance(value, dict):
            print(f"{indent}{key}:")
            _print_summary(value, indent + "  ")
        else:
            text = f"{value:.6g}" if isinstance(value, float) else json.dumps(value) if isinstance(value, list) else value
            print(f"{indent}{key}: {text}")


def _dataset_summary(root: Path) -> dict[str, Any]:
    """What training on `root` with the default config would use: views, image size, lens, scene box and
    background, each with its reason."""
    from trainer.config import preset
    from trainer.io.data import PINHOLE_COLUMNS, load_dataset
    from trainer.train import background_choice, scene_box_for

    cfg = preset("default")  # every preset chooses the box and the background alike
    data = load_dataset(root, background=tuple(cfg.background), color_space=cfg.color_space)  # type: ignore[arg-type]
    box = scene_box_for(cfg, data)
    tr = data.train
    lens = "pinhole" if tr.intrinsics.shape[1] == PINHOLE_COLUMNS else "with lens distortion"
    return {
        "dataset": str(root),
        "train_views": len(tr.paths), "test_views": len(data.test.paths),
        "image_size": [tr.width, tr.height], "cameras": lens,
        "scene_box": box.box.tolist(), "scene_box_source": f"{box.source}: {box.reason}",
        "background": background_choice(cfg, tr.has_alpha),
        "notes": data.notes,
    }


def cmd_info(args: argparse.Namespace) -> int:
    path = Path(args.file)
    is_dataset = (path / "transforms_train.json").is_file() or (path / "transforms.json").is_file()
    if path.is_dir() and is_dataset and not (path / "config.json").is_file():
        summary = _dataset_summary(path)
    elif path.is_dir():
        summary = _run_summary(path)
    elif path.is_file():
        summary = {"file": str(path), **grid_summary(load_grid(path))}
    else:
        raise UsageError(f"{path}: no such file or directory")
    if args.json:
        print(json.dumps(to_json_value(summary), indent=2))
    else:
        _print_summary(summary)
    return 0


def cmd_devices(args: argparse.Namespace) -> int:
    print(json.dumps(describe_device(resolve_device(args.device))))
    return 0


# ---------------------------------------------------------------------------------------------------


class _Interrupted(Exception):
    pass


class _TrainingFailed(Exception):
    pass


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m trainer", description="Plenoxels trainer (see docs/CONTRACTS.md).")
    p.add_argument("--version", action="version", version=f"blender_plenox trainer {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def threads(q: argparse.ArgumentParser) -> None:
        q.add_argument("--threads", type=int,
                       help="CPU threads for torch (default: torch's, one per core). On a small machine "
                            "with other busy work, fewer threads keep the run from stalling")

    def progress_and_device(q: argparse.ArgumentParser, default_progress: str) -> None:
        q.add_argument("--progress", choices=("bar", "json", "none"), default=default_progress,
                       help="bar: tqdm on stderr; json: contract-3 events on stdout; none")
        q.add_argument("--device", choices=DEVICE_CHOICES,
                       help="default: the config's (auto: CUDA, then Apple's MPS, then the CPU)")
        threads(q)

    t = sub.add_parser("train", help="train a grid on a dataset directory")
    t.add_argument("--data", help="dataset directory (contract 1); with --resume, default: the run's")
    t.add_argument("--out", required=True, help="run directory to create (or continue with --resume)")
    t.add_argument("--preset", help="fast | capture | default | quality | tiny (default: default)")
    t.add_argument("--config", help="JSON file of config keys, applied over the preset")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one config key, typed by the field (repeatable)")
    t.add_argument("--resume", action="store_true", help="continue OUT from its checkpoint and config.json")
    t.add_argument("--force", action="store_true", help="train into an existing OUT, replacing its results")
    t.add_argument("--seed", type=int)
    t.add_argument("--downscale", type=int)
    t.add_argument("--test-views", type=int, default=0, help="evaluate at most N test views (0: all)")
    progress_and_device(t, "bar")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("eval", help="re-evaluate a run's grid.npz on its dataset, updating metrics.json")
    e.add_argument("--run", required=True)
    e.add_argument("--data", help="default: the run's dataset")
    e.add_argument("--split", choices=("test", "train"), default="test")
    e.add_argument("--test-views", type=int, default=0, help="evaluate at most N views (0: all)")
    progress_and_device(e, "none")
    e.set_defaults(func=cmd_eval)

    r = sub.add_parser("render", help="render a run's grid from the test poses or on an orbit")
    r.add_argument("--run", required=True)
    r.add_argument("--views", choices=("test", "orbit"), default="test")
    r.add_argument("--frames", type=int, default=60, help="orbit frames")
    r.add_argument("--size", type=int, default=256, help="orbit image side in pixels")
    r.add_argument("--fov", type=float, default=40.0, help="orbit horizontal field of view, degrees")
    r.add_argument("--elevation", type=float, default=30.0, help="orbit elevation above the box centre, degrees")
    r.add_argument("--distance", type=float, help="orbit radius (default: the bounding sphere of the voxels with density fills the view)")
    r.add_argument("--fps", type=float, default=20.0, help="orbit.gif frame rate")
    r.add_argument("--dc-only", action="store_true", help="view-independent colour (what Blender shows)")
    r.add_argument("--data", help="for --views test; default: the run's dataset")
    r.add_argument("--out", help="default: RUN/renders (test) or RUN/orbit")
    progress_and_device(r, "none")
    r.set_defaults(func=cmd_render)

    i = sub.add_parser("info", help="summarise a grid file, a run directory, or a dataset (the box and "
                                    "background training would use, and why)")
    i.add_argument("file")
    i.add_argument("--json", action="store_true", help="one JSON object on stdout")
    i.set_defaults(func=cmd_info, progress="none")

    d = sub.add_parser("devices", help="the device a run would use, as one JSON line")
    d.add_argument("--device", choices=DEVICE_CHOICES, default="auto")
    threads(d)
    d.set_defaults(func=cmd_devices, progress="none")
    return p


def _positive(args: argparse.Namespace) -> None:
    for name in ("frames", "size", "downscale", "fps", "threads"):
        value = getattr(args, name, None)
        if value is not None and value <= 0:
            raise UsageError(f"--{name}: must be positive, got {value}")


def main(argv: list[str] | None = None) -> int:
    # Redirected on Windows, stdout is in the ANSI code page (cp1252...), which cannot hold every path:
    # escape what it cannot hold rather than fail on it (stderr already does; JSON output is ASCII).
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(errors="backslashreplace")
    args = build_parser().parse_args(argv)
    args.argv = argv
    args.sink = make_sink(args.progress)

    def fail(code: int, message: str) -> int:
        close = getattr(args.sink, "close", None)
        if close is not None:
            close()
        line = " ".join(message.split("\n")).strip() or "unknown error"
        if args.progress == "json":
            args.sink.emit("error", message=line, code=code)
        print(f"error: {line}", file=sys.stderr, flush=True)
        return code

    from trainer.io.checkpoint import CheckpointError

    try:
        _positive(args)
        if getattr(args, "threads", None):
            import torch

            torch.set_num_threads(args.threads)
        return int(args.func(args))
    except _Interrupted as e:
        return fail(EXIT_INTERRUPTED, str(e))
    except KeyboardInterrupt:
        return fail(EXIT_INTERRUPTED, "interrupted")
    except BrokenPipeError:
        # stdout's reader left (e.g. `info ... | head`): not an error worth a line; silence the final flush
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except _TrainingFailed as e:
        return fail(EXIT_TRAINING, str(e))
    except (UsageError, ConfigError, GridFileError, CheckpointError, DeviceError) as e:
        return fail(EXIT_BAD_INPUT, str(e))
    except ValueError as e:
        from trainer.io.data import DatasetError

        if isinstance(e, DatasetError):
            return fail(EXIT_BAD_INPUT, str(e))
        return _unexpected(fail, e)
    except Exception as e:  # noqa: BLE001 -- anything else fails the run: one line, traceback on request
        return _unexpected(fail, e)


def _unexpected(fail: Any, e: BaseException) -> int:
    if os.environ.get("TRAINER_DEBUG"):
        traceback.print_exc()
    first = str(e).splitlines()[0] if str(e) else ""
    return fail(EXIT_TRAINING, f"{type(e).__name__}: {first} (set TRAINER_DEBUG=1 for a traceback)")
