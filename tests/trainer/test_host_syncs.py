"""Host synchronisations per training step, counted on the CPU, so that a GPU regression shows here.

On CUDA every op that needs a value or a size computed on the device (a Python number from a tensor,
a boolean mask, nonzero, repeat_interleave without its output size, unique) stalls the host until the
device has caught up, and the GPU idles while the host queues the next kernels. The watch counts
those ops at the dispatcher, below torch's Python layer, so it also sees the ones torch issues itself.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from trainer.config import preset
from trainer.io.data import Dataset, load_dataset
from trainer.io.events import EventSink
from trainer.train import Trainer

CPU = torch.device("cpu")
# Packed samples have data-dependent sizes, read once each: the ray segments, those near live cells,
# the samples in live occupancy blocks, the visible ones, the rows they touch. Everything else uses
# sizes known on the host.
# (It was 20 before session 4: masks, per-step loss reads, the longest ray, the voxel size.)
MAX_SYNCS_PER_STEP = 5
aten = torch.ops.aten

# ops whose output size or value the host must wait for
_ALWAYS = {aten._local_scalar_dense.default, aten.nonzero.default, aten.masked_select.default,
           aten._unique2.default, aten.unique_dim.default, aten.unique_consecutive.default,
           aten.nonzero_static.default}


def _is_sync(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    if func in _ALWAYS:
        return True
    if func in (aten.index.Tensor, aten.index_put_.default, aten.index_put.default, aten._index_put_impl_.default):
        return any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in tree_leaves(args[1]))
    if func in (aten.repeat_interleave.Tensor, aten.repeat_interleave.self_Tensor):
        return kwargs.get("output_size") is None
    return False


class SyncWatch(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.syncs: Counter[str] = Counter()
        self.ops = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        self.ops += 1
        if _is_sync(func, args, kwargs):
            self.syncs[str(func)] += 1
        return func(*args, **kwargs)


class NullSink(EventSink):
    def __init__(self) -> None:  # no file, no stdout
        pass

    def emit(self, event: str, **fields: Any) -> None:
        pass


@pytest.fixture(scope="module")
def sphere(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    import scenes  # tests/fixtures/scenes.py, on sys.path via tests/conftest.py

    root = tmp_path_factory.mktemp("sphere")
    scenes.write_sphere_dataset(root, n_train=12, n_test=1, width=24, height=24, aabb=[[-1, -1, -1], [1, 1, 1]])
    return load_dataset(root)


def test_the_watch_sees_each_kind_of_sync() -> None:
    x = torch.arange(6.0)
    with SyncWatch() as watch:
        float(x.sum())
        x[x > 2]
        torch.nonzero(x)
        torch.repeat_interleave(torch.tensor([1, 2]))
        torch.repeat_interleave(torch.tensor([1, 2]), output_size=3)  # size given: no sync
        x.index_select(0, torch.tensor([1]))  # no sync
    assert sum(watch.syncs.values()) == 4, watch.syncs


@pytest.mark.parametrize(("sh_degree", "background_model", "pixel_jitter"),
                         [(0, "color", False), (2, "color", False), (2, "envmap", True)])
def test_a_training_step_synchronises_the_host_only_a_few_times(sphere: Dataset, tmp_path: Path,
                                                                sh_degree: int, background_model: str,
                                                                pixel_jitter: bool) -> None:
    # every loss and option on, so that each one's code path is counted
    cfg = dataclasses.replace(
        preset("tiny"), steps=40, resolutions=[16], upsample_at=[], prune_at=[], batch_rays=256, sh_degree=sh_degree,
        tv_sigma=1e-5, tv_sh=1e-3, sparsity=1e-10, beta_loss=1e-4, log_every=1000, checkpoint_every=0,
        background_model=background_model, pixel_jitter=pixel_jitter,
    )
    trainer = Trainer(cfg, sphere, tmp_path, NullSink(), CPU)
    for _ in range(3):  # past the first steps, as a long run is
        trainer.train_step()
        trainer.step += 1
    with SyncWatch() as watch:
        trainer.train_step()
    assert watch.ops > 50
    assert sum(watch.syncs.values()) <= MAX_SYNCS_PER_STEP, watch.syncs
