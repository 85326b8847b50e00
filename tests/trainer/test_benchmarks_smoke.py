"""benchmarks/bench_lego.py still runs against the trainer's current API: its --smoke mode, as a real
subprocess of this environment's Python (the one with torch), on the small sphere it generates.

Only that it runs and prints its figures is checked: timings belong to the benchmark, not to tests,
and the figures of a 40-step run on a 24x24 sphere mean nothing.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

NUMBER = r"[0-9][0-9.,]*"


def test_bench_lego_smoke_runs_and_prints_its_figures(repo_root: Path, tmp_path: Path) -> None:
    # one thread: two threads beside other busy work can run 10-40x slower on a 2-core machine
    proc = subprocess.run(
        [sys.executable, str(repo_root / "benchmarks" / "bench_lego.py"), "--smoke", "--threads", "1"],
        cwd=tmp_path, check=False, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert re.search(rf"^training: 40 steps in {NUMBER}s wall$", out, re.MULTILINE), out
    assert len(re.findall(rf"^  stage \d+x\d+x\d+: \d+ steps, {NUMBER} rays/s, peak ", out, re.MULTILINE)) == 2, out
    for name in ("exported grid, pixel area 2x2", "exported grid, pixel centres", "training grid, pixel area 2x2"):
        assert re.search(rf"^test \({name}\): PSNR {NUMBER} dB, SSIM {NUMBER} over 2 views", out, re.MULTILINE), out
