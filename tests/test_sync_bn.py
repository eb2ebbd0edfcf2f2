"""GlobalBatchNorm and the collective helpers: two gloo processes against one process."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from diffaug_genomics.train import distributed as helpers
from diffaug_genomics.train.distributed import DistContext
from diffaug_genomics.train.sync_bn import GlobalBatchNorm, convert_sync_batchnorm

WORLD = 2
LOCAL_B = 5


def _model() -> nn.Module:
    torch.manual_seed(3)
    return nn.Sequential(nn.Conv1d(4, 6, 3, padding=1), nn.BatchNorm1d(6), nn.ReLU(),
                         nn.Flatten(), nn.Linear(6 * 7, 8), nn.BatchNorm1d(8)).double()


def _worker(rank: int, init_file: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=WORLD)
    try:
        x = torch.randn(WORLD * LOCAL_B, 4, 7, generator=torch.Generator().manual_seed(9),
                        dtype=torch.float64)
        ref = _model()  # one process, plain BatchNorm over the whole batch
        out_ref = ref(x)
        (out_ref ** 2).mean().backward()
        local = convert_sync_batchnorm(_model(), torch.device("cpu"))
        assert isinstance(local[1], GlobalBatchNorm) and isinstance(local[5], GlobalBatchNorm)
        sl = slice(rank * LOCAL_B, (rank + 1) * LOCAL_B)
        out = local(x[sl])
        torch.testing.assert_close(out, out_ref[sl])
        ((out ** 2).sum() / (WORLD * LOCAL_B * 8)).backward()  # this rank's part of the mean
        params = list(local.parameters())
        for p in params:
            p.grad *= WORLD  # average_gradients divides by W: make it the sum of the parts
        helpers.average_gradients(params)
        for p, q in zip(params, ref.parameters(), strict=True):
            torch.testing.assert_close(p.grad, q.grad)
        for key, value in ref.state_dict().items():  # running statistics too
            torch.testing.assert_close(local.state_dict()[key], value)
        # collectives of the training loop
        ctx = DistContext(rank, WORLD)
        lo, hi = ctx.shard(7)
        rows = torch.arange(7 * 3, dtype=torch.float16).reshape(7, 3)
        torch.testing.assert_close(helpers.all_gather_rows(rows[lo:hi], ctx, 7), rows)
        arr = np.arange(12, dtype=np.int64).reshape(4, 3) if rank == 0 else None
        np.testing.assert_array_equal(helpers.broadcast_array(arr), np.arange(12).reshape(4, 3))
        assert helpers.any_rank(rank == 1) and not helpers.any_rank(False)
        assert helpers.mean_over_ranks(torch.tensor(float(rank))) == 0.5
        assert helpers.same_on_all_ranks(f"r{rank}") == ["r0", "r1"]
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed not available")
def test_global_batch_norm_on_two_ranks_equals_batch_norm_on_the_whole_batch(tmp_path):
    mp.spawn(_worker, args=(str(tmp_path / "rendezvous"),), nprocs=WORLD, join=True)


def test_without_a_process_group_it_is_batch_norm():
    torch.manual_seed(0)
    bn, gbn = nn.BatchNorm1d(3), GlobalBatchNorm(3)
    x = torch.randn(6, 3, 5)
    torch.testing.assert_close(gbn(x), bn(x))
    torch.testing.assert_close(gbn.running_var, bn.running_var)
    assert helpers.any_rank(True) and helpers.mean_over_ranks(torch.tensor(2.0)) == 2.0
