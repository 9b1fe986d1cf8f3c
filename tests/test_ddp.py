"""DistributedDataParallel on 2 CPU processes (gloo) gives the gradients of one process on the
combined batch, for the regressor (DDP) and the discriminator (hand-averaged)."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.multiprocessing as mp
from test_training import tiny_params, write_tiny_dataset

# BatchNorm normalises with each process's own batch (SyncBatchNorm needs CUDA), and dropout
# draws per process: freeze the former and switch off the latter so the comparison is exact.
PARAMS = tiny_params(**{
    "train.freeze_bn": True,
    "data.pair_kinds": ["multiview"],  # every pair counts in the multiview term on each rank
    "data.augment": {"rotation_prob": 1.0},
})


def _gradients(world_size: int, rank: int, root: str, out_path: str) -> None:
    from pathlib import Path

    from texturepose.body import build_body_model
    from texturepose.training.config import TrainConfig
    from texturepose.training.data import build_data, load_mocap_poses
    from texturepose.training.distributed import DistInfo, init_distributed
    from texturepose.training.factory import build_models, build_trainer

    torch.set_num_threads(1)
    root = Path(root)
    params = dict(PARAMS)
    params["train"] = dict(PARAMS["train"], batch_size=2 * 2 // world_size)
    params["data"] = dict(PARAMS["data"], pairs_per_batch=2 // world_size)
    cfg = TrainConfig.from_params(params)
    info = init_distributed("cpu") if world_size > 1 else DistInfo()
    body = build_body_model("anny")
    torch.manual_seed(0)
    rot = load_mocap_poses(root / "data/mocap/anny_poses.h5", body)
    models = build_models(cfg, body, rot)
    h5 = root / "data/processed/tiny_train.h5"
    data = build_data(cfg, body, {"tiny": (h5, root / "data/pairs/tiny_train.parquet")}, info)
    trainer = build_trainer(cfg, body, models, info)
    batch = torch.utils.data.default_collate([data.dataset[r] for r in data.sampler.batch(0)])
    logs, out, _ = trainer.generator_backward(batch)
    grads = {f"r.{n}": p.grad.clone() for n, p in trainer.regressor.named_parameters()
             if p.grad is not None}
    logs.update(trainer.discriminator_backward(out, len(batch["image"])))
    grads.update({f"d.{n}": p.grad.clone() for n, p in trainer.disc.named_parameters()})
    if rank == 0:
        torch.save({"grads": grads, "logs": logs}, out_path)
    if world_size > 1:
        torch.distributed.destroy_process_group()


def _worker(rank: int, world_size: int, port: int, root: str, out_path: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank))
    _gradients(world_size, rank, root, out_path)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_ddp_two_processes_match_one_process_on_the_combined_batch(tmp_path):
    write_tiny_dataset(tmp_path)
    ddp_out, single_out = tmp_path / "ddp.pt", tmp_path / "single.pt"
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path), str(ddp_out)), nprocs=2, join=True)
    _gradients(1, 0, str(tmp_path), str(single_out))
    ddp, single = torch.load(ddp_out)["grads"], torch.load(single_out)["grads"]
    assert ddp.keys() == single.keys()
    assert any(k.startswith("r.backbone") for k in ddp) and any(k.startswith("d.") for k in ddp)
    for k, g in single.items():
        scale = float(g.abs().max()) + 1e-12
        torch.testing.assert_close(ddp[k], g, rtol=1e-3, atol=1e-4 * scale, msg=k)
    # And the processes really did split the work: each saw half of the batch.
    assert ddp != {} and not all(torch.equal(ddp[k], torch.zeros_like(ddp[k])) for k in ddp)
