"""Progress events (contract 3): JSON lines on stdout for the add-on, a tqdm bar for people, or nothing.

The training loop reports through ``EventSink.emit(event, **fields)`` and never prints, so that with
``--progress json`` stdout carries JSON objects only.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import IO, Any, Protocol

from tqdm import tqdm

from trainer import EVENTS_VERSION

EVENT_NAMES = ("start", "progress", "stage", "snapshot", "done", "error")


class EventSink(Protocol):
    def emit(self, event: str, **fields: Any) -> None: ...


def to_json_value(value: Any) -> Any:
    """Plain JSON for numpy/torch scalars, paths and tuples; non-finite floats become null (strict JSON)."""
    if isinstance(value, dict):
        return {str(k): to_json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json_value(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if hasattr(value, "tolist"):  # numpy arrays/scalars and torch tensors
        return to_json_value(value.tolist())
    if hasattr(value, "item"):
        return to_json_value(value.item())
    return str(value)


def event_line(event: str, **fields: Any) -> str:
    if event not in EVENT_NAMES:
        raise ValueError(f"unknown event {event!r}")
    payload = {"event": event, "time": time.time(), **to_json_value(fields)}
    if event == "start":
        payload.setdefault("version", EVENTS_VERSION)
    return json.dumps(payload, allow_nan=False, separators=(",", ":"))


class JsonEventSink:
    """One JSON object per line, flushed at once so that a reader sees each event as it happens."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream if stream is not None else sys.stdout

    def emit(self, event: str, **fields: Any) -> None:
        self.stream.write(event_line(event, **fields) + "\n")
        self.stream.flush()


class NullEventSink:
    def emit(self, event: str, **fields: Any) -> None:
        if event not in EVENT_NAMES:
            raise ValueError(f"unknown event {event!r}")


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return "x".join(str(v) for v in value)
    return str(value)


class BarEventSink:
    """A tqdm bar on stderr (the terminal view); stage, snapshot and done events become log lines."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.bar: tqdm | None = None

    def _write(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)

    def emit(self, event: str, **fields: Any) -> None:
        if event not in EVENT_NAMES:
            raise ValueError(f"unknown event {event!r}")
        if event == "start":
            self.close()
            initial = int(fields.get("step", 0) or 0)
            self.bar = tqdm(total=fields.get("total"), initial=initial, file=self.stream,
                            unit="step", dynamic_ncols=True, desc="train")
            self._write(f"training on {fields.get('device', '?')}, output in {fields.get('out', '?')}")
        elif event == "progress":
            if self.bar is not None:
                self.bar.update(max(0, int(fields.get("step", 0)) - self.bar.n))
                keys = ("loss", "psnr", "resolution", "voxels")
                self.bar.set_postfix_str(
                    " ".join(f"{k}={_short(fields[k])}" for k in keys if fields.get(k) is not None),
                    refresh=False)
        elif event == "stage":
            parts = [f"{k}={_short(fields[k])}" for k in ("step", "resolution", "voxels_before", "voxels_after")
                     if fields.get(k) is not None]
            message = f" {fields['message']}" if fields.get("message") else ""
            self._write(f"[{fields.get('name', 'stage')}] {' '.join(parts)}{message}")
        elif event == "snapshot":
            pass  # the live preview is for the add-on; a terminal user needs no line per snapshot
        elif event == "done":
            self.close()
            psnr = fields.get("psnr")
            psnr_text = f"test PSNR {psnr:.2f} dB, " if isinstance(psnr, (int, float)) else ""
            self._write(f"done: {psnr_text}grid {fields.get('grid')}, metrics {fields.get('metrics')}")
        elif event == "error":
            self.close()  # the CLI prints the error line itself

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
