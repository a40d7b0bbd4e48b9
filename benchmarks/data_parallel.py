"""Data-parallel training: a training step as N MPI ranks beside one process and PyTorch.

    python benchmarks/data_parallel.py                  # FCN-8s, batch 8, 64x64, 2 ranks
    python benchmarks/data_parallel.py --ranks 2 4 --batch 16 --model unet

Contenders, each its own process, kept alive and told when to run (named pipes, so a
waiting contender sleeps instead of spinning on a core the others need), in turns (ABBA),
on the same weights and global batch:

- minifcn, one process, 1 BLAS thread, then 2 (all cores) BLAS threads;
- minifcn, N MPI ranks of 1 BLAS thread each, global batch split B/N, with SyncBatchNorm
  (as ``minifcn train --workers N``) and without (each rank normalizes by its own share);
- PyTorch 2.13 on the same model (torch_models.py), 1 thread, then 2 threads.

Reports median step times, ratios to PyTorch, the speed-up over one thread and the scaling
efficiency t(1 rank) / (N * t(N ranks)) at equal global batch; the all-reduce's cost between
the ranks here (latency and bandwidth by message size); and, on paper, a step on N ranks of
a cluster: one rank's measured step on its share of the batch (timed here, one process, one
thread, batch B/N) plus the messages, at this machine's measured latency and bandwidth and
at typical figures for 10 Gbit Ethernet and InfiniBand. Writes ``results/data_parallel.md``.
"""

from __future__ import annotations

import _common

_common.quiet_thread_spinning()

import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent

# Typical MPI figures for two networks, for the model of a cluster (not measured here):
# (latency of a small message in seconds, bandwidth in bytes per second).
NETWORKS = {"10 Gbit Ethernet (TCP)": (25e-6, 1.1e9), "InfiniBand HDR100": (2e-6, 11e9)}


class Contender:
    """A ``_contender.py`` process (or mpiexec job of ``ranks`` of them) awaiting commands."""

    def __init__(self, name: str, folder: Path, args: list[str], threads: int, ranks: int,
                 mpiexec: str | None):
        self.name, self.ranks = name, ranks
        prefix = folder / name.replace(" ", "_").replace(",", "")
        self.pipes = [Path(f"{prefix}.{rank}") for rank in range(ranks)]
        for pipe in self.pipes:
            os.mkfifo(pipe)
        env = {**os.environ, "OPENBLAS_NUM_THREADS": str(threads),
               "OMP_NUM_THREADS": str(threads)}
        command = [sys.executable, str(HERE / "_contender.py"), "--fifo", str(prefix),
                   "--threads", str(threads), *args]
        if ranks > 1:
            command = [mpiexec, "-n", str(ranks), *command]
        self.process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True,
                                        cwd=HERE)
        # Opening a pipe for writing waits until its reader has opened it: the contender
        # has built its model and taken its first step.
        self.writers = [open(pipe, "w") for pipe in self.pipes]  # noqa: SIM115
        self._answer()  # {"ready": true}

    def _answer(self) -> dict:
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.name}: the contender stopped (exit status "
                               f"{self.process.wait()})")
        return json.loads(line)

    def tell(self, command: str) -> dict:
        for writer in self.writers:
            writer.write(command + "\n")
            writer.flush()
        return self._answer()

    def close(self) -> None:
        for writer in self.writers:
            writer.write("quit\n")
            writer.close()
        self.process.wait(timeout=60)


def main(argv=None) -> None:
    parser = _common.argument_parser(__doc__.splitlines()[0], repeats=10, quick_repeats=2)
    parser.add_argument("--model", default="fcn8s")
    parser.add_argument("--batch", type=int, default=8, help="the global batch (default 8)")
    parser.add_argument("--size", type=int, default=64, help="image side (default 64)")
    parser.add_argument("--ranks", nargs="+", type=int, default=[2],
                        help="numbers of MPI ranks to time (default 2)")
    parser.add_argument("--steps", type=int, default=None,
                        help="steps per turn (default 5, 2 with --quick); medians are over "
                             "every step of every turn")
    args = _common.parse_arguments(parser, argv)
    env = _common.setup(args)
    from minifcn import distributed, launch

    try:
        mpiexec = launch.find_mpiexec()
    except distributed.DistributedUnavailableError as error:
        _common.fail(str(error))
    steps = args.steps or (2 if args.quick else 5)
    size = 32 if args.quick else args.size
    cores = _common.usable_cores()
    common = ["--model", args.model, "--size", str(size)]
    plans = [("minifcn, 1 process, 1 thread", ["--framework", "minifcn"], 1, 1),
             (f"minifcn, 1 process, {cores} threads", ["--framework", "minifcn"], cores, 1)]
    for n in args.ranks:
        plans.append((f"minifcn, {n} ranks x 1 thread", ["--framework", "minifcn"], 1, n))
        plans.append((f"minifcn, {n} ranks x 1 thread, no SyncBN",
                      ["--framework", "minifcn", "--no-sync-bn"], 1, n))
    plans += [("PyTorch, 1 thread", ["--framework", "torch"], 1, 1),
              (f"PyTorch, {cores} threads", ["--framework", "torch"], cores, 1)]
    # One rank's share of the batch for the model of a cluster: N = 2, 4, 8, ... ranks.
    shares = [args.batch // n for n in (2, 4, 8, 16, 32)
              if args.batch % n == 0 and args.batch // n >= 1]
    for share in shares:
        plans.append((f"minifcn, 1 process, 1 thread, batch {share}",
                       ["--framework", "minifcn", "--batch", str(share)], 1, 1))

    report = _common.Report(f"Data-parallel training step, {args.model}, global batch "
                            f"{args.batch}, {size}x{size} (float32)", env, args)
    times: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as folder:
        contenders = [Contender(name, Path(folder),
                                [*common, "--batch", str(args.batch), *extra], threads,
                                ranks, mpiexec) for name, extra, threads, ranks in plans]
        try:
            for contender in contenders:  # warm-up
                for _ in range(args.warmup):
                    contender.tell(f"steps {steps}")
            for repeat in range(args.repeats):
                order = contenders if repeat % 2 == 0 else contenders[::-1]
                for contender in order:
                    times.setdefault(contender.name, []).extend(
                        contender.tell(f"steps {steps}")["steps"])
            allreduce = {c.ranks: c.tell("comm")["allreduce"] for c in contenders
                         if c.ranks > 1 and "no SyncBN" not in c.name}
        finally:
            for contender in contenders:
                contender.close()

    median = {name: 1e3 * statistics.median(values) for name, values in times.items()}
    one = median["minifcn, 1 process, 1 thread"]
    torch_all = median[f"PyTorch, {cores} threads"]
    torch_one = median["PyTorch, 1 thread"]
    rows = []
    for name, ranks_ in [(p[0], p[3]) for p in plans if "batch" not in p[0]]:
        ms = median[name]
        ours = name.startswith("minifcn")
        efficiency = f"{one / (ranks_ * ms):.2f}" if ours and ranks_ > 1 else ""
        rows.append([name, f"{ms:.1f}", f"{one / ms:.2f}x" if ours else "",
                     efficiency, f"**{ms / torch_all:.2f}**", f"{ms / torch_one:.2f}"])
    report.table(
        "Milliseconds per step (median over every step of every turn)",
        ["contender", "ms", "speed-up over 1 thread", "scaling efficiency",
         f"/ PyTorch {cores} threads", "/ PyTorch 1 thread"], rows,
        f"Each contender its own process, {args.repeats} turns of {steps} steps in ABBA "
        f"order after {args.warmup} warm-up turns. Scaling efficiency: t(1 process, 1 "
        f"thread) / (N x t(N ranks)), the global batch the same. The BLAS threads of each "
        f"contender are set by OPENBLAS_NUM_THREADS (and PyTorch's by torch.set_num_threads); "
        f"a rank of N has 1.")
    for n, measured in allreduce.items():
        comm_rows = []
        for nbytes, seconds in sorted(measured.items(), key=lambda item: int(item[0])):
            nbytes = int(nbytes)
            comm_rows.append([_size(nbytes), f"{1e6 * seconds:.1f}",
                              f"{nbytes / seconds / 1e9:.2f}" if nbytes >= 2**18 else ""])
        report.table(f"All-reduce between {n} ranks on this machine (float32, median of 50)",
                     ["message", "microseconds", "GB/s (message / time)"], comm_rows,
                     "One blocking MPI_Allreduce (MPICH, shared memory). FCN-8s's gradients "
                     "are 537,724 floats (2.1 MB); SyncBatchNorm sends 3 x C float64 forward "
                     "and 2 x C backward per layer (a few hundred bytes).")
    if allreduce:
        _cluster_model(report, args, median, allreduce[min(allreduce)], shares)
    report.save(args.out, "data_parallel")


def _cluster_model(report, args, median: dict, measured: dict, shares: list) -> None:
    """A step on N ranks, on paper: compute measured here, messages modelled."""
    from minifcn import nn
    from minifcn.models import build_model

    model = build_model(args.model, 4)
    gradient_bytes = 4 * model.num_parameters()
    norms = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    small_messages = 2 * norms + 1  # SyncBatchNorm forward and backward, and the loss
    latency = measured["8"]  # the 8-byte all-reduce between 2 ranks
    bandwidth = 2**23 / measured[str(2**23)]  # 2 ranks: each sends the message once
    networks = {"this machine (shared memory, measured)": (latency, bandwidth), **NETWORKS}
    one = median["minifcn, 1 process, 1 thread"]
    compute = {1: one, **{args.batch // share: median[f"minifcn, 1 process, 1 thread, "
                                                       f"batch {share}"]
                          for share in shares}}
    rows = []
    for n in sorted(compute):
        if n == 1:
            continue
        for network, (alpha, beta) in networks.items():
            ring = 2 * (n - 1) * alpha + 2 * (n - 1) / n * gradient_bytes / beta
            small = small_messages * math.ceil(math.log2(n)) * alpha
            step = compute[n] + 1e3 * (ring + small)
            rows.append([str(n), network, f"{args.batch // n}", f"{compute[n]:.1f}",
                         f"{1e3 * ring:.2f}", f"{1e3 * small:.2f}", f"{step:.1f}",
                         f"{one / step:.2f}x", f"{one / (n * step):.2f}"])
    report.table(
        f"On paper: a step on N ranks, global batch {args.batch}", ["ranks", "network",
        "images a rank", "compute ms (measured)", "gradients ms", "small messages ms",
        "step ms", "speed-up", "efficiency"], rows,
        f"Compute: one process, one thread, on a rank's share of the batch, measured above "
        f"(each rank is assumed to have a core like this machine's). Gradients: a ring "
        f"all-reduce of {gradient_bytes / 1e6:.2f} MB, 2(N-1) latencies plus 2(N-1)/N of the "
        f"bytes at the bandwidth, with no overlap with the backward (an upper bound: DDP's "
        f"buckets hide part of it). Small messages: {small_messages} a step "
        f"({norms} SyncBatchNorm layers forward and backward, and the loss), each "
        f"ceil(log2 N) latencies (recursive doubling). This machine: latency "
        f"{1e6 * latency:.1f} us and bandwidth {bandwidth / 1e9:.1f} GB/s, from the 2-rank "
        f"all-reduces above; the networks' figures are typical ones, not measured here.",
        text_columns=2)


def _size(nbytes: int) -> str:
    for unit, scale in (("MiB", 2**20), ("KiB", 2**10)):
        if nbytes >= scale:
            return f"{nbytes / scale:g} {unit}"
    return f"{nbytes} B"


if __name__ == "__main__":
    main()
