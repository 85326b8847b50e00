"""Parses the trainer's progress events (contract 3) and keeps the state the panel shows.

Only JSON objects with a known "event" count; anything else on stdout is ignored, as the contract
says, so a stray print in the trainer cannot break the add-on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

EVENT_KINDS = ("start", "progress", "stage", "snapshot", "done", "error")


@dataclass(frozen=True)
class ProgressEvent:
    kind: str
    data: dict[str, Any]

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)


def parse_event(line: str | bytes) -> ProgressEvent | None:
    """One stdout line → an event, or None for anything that is not a contract-3 event."""
    if isinstance(line, bytes):
        line = line.decode("utf-8", errors="replace")
    text = line.strip()
    if not text.startswith("{"):
        return None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError:
        return None
    if not isinstance(obj, dict) or obj.get("event") not in EVENT_KINDS:
        return None
    return ProgressEvent(kind=obj["event"], data=obj)


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def format_duration(seconds: float | None) -> str:
    if seconds is None or seconds < 0:
        return "--:--"
    s = round(seconds)
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m:02d}:{sec:02d}"


@dataclass
class TrainingState:
    """What the panel, the status bar and the headless log show about a run."""

    step: int = 0
    total: int = 0
    psnr: float | None = None
    loss: float | None = None
    resolution: tuple[int, ...] = ()
    voxels: int | None = None
    elapsed: float | None = None
    eta: float | None = None
    stage: str = ""
    device: str = ""
    snapshot: str = ""
    snapshot_step: int = -1
    grid: str = ""
    metrics: str = ""
    test_psnr: float | None = None
    error: str = ""
    finished: bool = False
    history: list[str] = field(default_factory=list)

    @property
    def fraction(self) -> float:
        """Share of the run done: by time where the trainer gave its elapsed time and ETA (a run with a
        time limit ends before its last step, and its ETA says when), else by steps."""
        if self.finished and not self.error:
            return 1.0
        if self.elapsed is not None and self.eta is not None and self.elapsed + self.eta > 0:
            share = self.elapsed / (self.elapsed + self.eta)
        else:
            share = self.step / self.total if self.total > 0 else 0.0
        return min(max(share, 0.0), 1.0)

    def apply(self, ev: ProgressEvent) -> None:
        d = ev.data
        if ev.kind == "start":
            self.total = int(d.get("total") or self.total)
            self.device = str(d.get("device", ""))
            self._set_resolution(d.get("resolution"))
        elif ev.kind == "progress":
            self.step = int(d.get("step") or self.step)
            self.total = int(d.get("total") or self.total)
            self.loss = _number(d.get("loss"))
            self.psnr = _number(d.get("psnr"))
            self._set_resolution(d.get("resolution"))
            voxels = _number(d.get("voxels"))
            self.voxels = int(voxels) if voxels is not None else self.voxels
            self.elapsed = _number(d.get("elapsed"))
            self.eta = _number(d.get("eta"))
        elif ev.kind == "stage":
            self.stage = str(d.get("name", ""))
            self._set_resolution(d.get("resolution"))
            after = _number(d.get("voxels_after"))
            self.voxels = int(after) if after is not None else self.voxels
            message = d.get("message")
            self.history.append(f"{self.stage}" + (f": {message}" if message else ""))
        elif ev.kind == "snapshot":
            self.snapshot = str(d.get("path", ""))
            step = _number(d.get("step"))
            self.snapshot_step = int(step) if step is not None else self.snapshot_step + 1
        elif ev.kind == "done":
            self.grid = str(d.get("grid", ""))
            self.metrics = str(d.get("metrics", ""))
            self.test_psnr = _number(d.get("psnr"))
            self.elapsed = _number(d.get("elapsed")) or self.elapsed
            # the steps done: fewer than the total when the time limit ended the run
            done = _number(d.get("step"))
            self.step = int(done) if done is not None else self.total or self.step
            self.finished = True
            self.eta = 0.0
        elif ev.kind == "error":
            self.error = str(d.get("message", "the trainer reported an error"))
            self.finished = True

    def _set_resolution(self, value: Any) -> None:
        if isinstance(value, list) and value and all(isinstance(v, int) for v in value):
            self.resolution = tuple(value)
        elif isinstance(value, int):
            self.resolution = (value, value, value)

    def summary(self) -> str:
        """One line for the status bar and the headless log."""
        parts = [f"step {self.step}/{self.total}" if self.total else f"step {self.step}"]
        if self.psnr is not None:
            parts.append(f"PSNR {self.psnr:.2f} dB")
        if self.resolution:
            parts.append("res " + "x".join(str(r) for r in self.resolution))
        if self.voxels is not None:
            parts.append(f"{self.voxels:,} voxels")
        if not self.finished:
            parts.append(f"ETA {format_duration(self.eta)}")
        return " | ".join(parts)
