"""One contender of ``data_parallel.py``: a process (or N MPI ranks) that keeps a model and a
batch ready and runs training steps when told to.

Started by data_parallel.py, never by hand. Each rank reads commands from a named pipe of
its own (``PREFIX.RANK``): a blocking read of a pipe takes no CPU, where waiting in an MPI
collective would spin on a core the other contenders need. Commands:

    steps K    run K training steps; rank 0 prints {"steps": [seconds, ...]} as one line
    comm       rank 0 prints {"allreduce": {bytes: seconds}} for a few message sizes
    quit

A step is what ``minifcn train`` does: forward, the whole batch's mean loss
(``global_mean_loss``), backward (averaged over the ranks in buckets by
DistributedDataParallel, with SyncBatchNorm unless --no-sync-bn), an Adam update. The
PyTorch contender runs the twin model from torch_models.py on the same weights and batch.
"""

from __future__ import annotations

import _common

_common.quiet_thread_spinning()

import argparse
import json
import statistics
import sys
import time

NUM_CLASSES = 4


def arguments():
    parser = argparse.ArgumentParser()
    parser.add_argument("--framework", choices=("minifcn", "torch"), required=True)
    parser.add_argument("--fifo", required=True, help="the command pipes' prefix")
    parser.add_argument("--model", default="fcn8s")
    parser.add_argument("--batch", type=int, default=8, help="the global batch")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-sync-bn", dest="sync_bn", action="store_false")
    parser.add_argument("--bucket-cap-mb", type=float, default=None)
    return parser.parse_args()


def batch(size: int, count: int):
    """The same global batch for every contender: random images, labels with 5% void."""
    import numpy as np

    rng = np.random.default_rng(0)
    images = rng.standard_normal((count, 3, size, size), dtype="float32")
    masks = rng.integers(0, NUM_CLASSES, (count, size, size))
    masks[rng.random(masks.shape) < 0.05] = 255
    return images, masks


def minifcn_step(args):
    """(step, rank, group) for minifcn, one rank of the world mpiexec started (or alone)."""
    import minifcn
    from minifcn import distributed, launch, nn, optim
    from minifcn.functional.parallel import even_slices
    from minifcn.models import build_model
    from minifcn.nn.parallel import DistributedDataParallel, global_mean_loss

    group = distributed.init_process_group() if distributed.launched_world_size() > 1 \
        else None
    rank, world = (group.rank, group.size) if group else (0, 1)
    if group is not None:
        launch.pin_blas_threads()
    minifcn.manual_seed(0)
    net = build_model(args.model, NUM_CLASSES)
    net.encoder.needs_input_grad = False  # as minifcn.train does
    model = net
    if world > 1:
        if args.sync_bn:
            nn.SyncBatchNorm.convert_sync_batchnorm(net)
        model = DistributedDataParallel(net, broadcast_buffers=not args.sync_bn,
                                        bucket_cap_mb=args.bucket_cap_mb)
    images, masks = batch(args.size, args.batch)
    rows = even_slices(args.batch, world)[rank]
    x, target = images[rows], masks[rows]
    criterion = nn.CrossEntropyLoss(ignore_index=255)
    optimizer = optim.Adam(net.parameters(), lr=1e-3)

    def step():
        loss, dloss = global_mean_loss(criterion(model(x), target), criterion)
        model.zero_grad()
        model.backward(criterion.backward(dloss))
        optimizer.step()

    return step, rank, group


def torch_step(args):
    import torch
    import torch_models

    import minifcn
    from minifcn.models import build_model

    torch.set_num_threads(args.threads)
    minifcn.manual_seed(0)
    ours = build_model(args.model, NUM_CLASSES)
    twin = torch_models.build_twin(args.model, NUM_CLASSES)
    twin.load_state_dict(torch_models.from_minifcn(ours.state_dict()))
    images, masks = batch(args.size, args.batch)
    x, target = torch.from_numpy(images), torch.from_numpy(masks)
    criterion = torch.nn.CrossEntropyLoss(ignore_index=255)
    optimizer = torch.optim.Adam(twin.parameters(), lr=1e-3)

    def step():
        optimizer.zero_grad()
        criterion(twin(x), target).backward()
        optimizer.step()

    return step, 0, None


def allreduce_seconds(group, repeats: int = 50) -> dict:
    """Median seconds of one blocking all-reduce of float32 buffers of a few sizes."""
    import numpy as np

    result = {}
    for nbytes in (8, 4096, 2**18, 2**21, 2**23):
        array = np.ones(nbytes // 4, dtype=np.float32)
        for _ in range(5):
            group.all_reduce(array)
        times = []
        for _ in range(repeats):
            group.barrier()
            started = time.perf_counter()
            group.all_reduce(array)
            times.append(time.perf_counter() - started)
        result[nbytes] = statistics.median(times)
    return result


def main() -> None:
    args = arguments()
    step, rank, group = (minifcn_step if args.framework == "minifcn" else torch_step)(args)
    step()  # the first step allocates what the others reuse
    commands = open(f"{args.fifo}.{rank}")  # noqa: SIM115 -- read for the process's life
    if rank == 0:
        print(json.dumps({"ready": True}), flush=True)
    for line in commands:
        command = line.split()
        if not command or command[0] == "quit":
            break
        if group is not None:
            group.barrier()  # every rank starts together
        if command[0] == "steps":
            times = []
            for _ in range(int(command[1])):
                started = time.perf_counter()
                step()
                times.append(time.perf_counter() - started)
            if rank == 0:
                print(json.dumps({"steps": times}), flush=True)
        elif command[0] == "comm":
            measured = allreduce_seconds(group) if group is not None else {}
            if rank == 0:
                print(json.dumps({"allreduce": measured}), flush=True)


if __name__ == "__main__":
    sys.exit(main())
