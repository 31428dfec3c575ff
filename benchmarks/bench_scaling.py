"""Data-parallel scaling of the torch backend: training target tokens/s with 1 and with 2
processes started by torchrun (gloo, loopback, one intra-op thread each), at the same
global batch.

    python benchmarks/bench_scaling.py [--updates 40] [--repeats 3] [--hidden-size 256]

Model and data: an LSTM encoder-decoder (hidden 256, embedding 64, one layer, no
attention: the num2words model of bench_train.py) on the 1,000 pairs of ``--data
num2words``, global batch 64 sentences (32 per rank with 2 processes), the toolkit's Adam.
Each run is ``python -m torch.distributed.run --nproc-per-node N bench_scaling.py
--worker ...``: every rank builds the model through the backend's ``join`` and ``create``
as ``seq2seq-kit train`` does, walks the same shuffled epoch plans (``batching.shards``),
and per update calls ``train_step`` then sums the loss over the ranks (the trainer's one
all-reduce per update). Timed on rank 0: ``--updates`` updates after 3 untimed ones,
between two barriers. tokens/s counts the target tokens (EOS included) of the global
batches. Runs alternate 1, 2, 1, 2... ``--repeats`` times; the median of each is reported.

``--find-unused-parameters`` wraps the network with DDP's ``find_unused_parameters=True``
(which the backend does not use) to measure what it would cost.

The scaling ratio (2-process tokens/s over 1-process) is at most 2 on a machine with two
free cores; on a machine whose cores other work shares it is lower, and the load average
printed with the figures says how busy the machine was.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path


def worker(args: argparse.Namespace) -> None:
    """One rank (or the single process): train and, on rank 0, write the figures."""
    import numpy as np
    import torch

    from seq2seq_kit.batching import shards
    from seq2seq_kit.datasets import number_words
    from seq2seq_kit.plugins import get_backend
    from seq2seq_kit.runtime import Runtime, launch_environment
    from seq2seq_kit.spec import ModelSpec, OptimizerSpec
    from seq2seq_kit.vocab import Vocabulary

    torch.set_num_threads(1)
    if args.find_unused_parameters:
        import seq2seq_kit_torch.distributed as distributed

        def data_parallel(net):
            return torch.nn.parallel.DistributedDataParallel(net, find_unused_parameters=True)

        distributed.data_parallel = data_parallel
    backend = get_backend("torch")
    launch = launch_environment()
    runtime = Runtime(threads=1, device="cpu")
    group = None if launch is None else backend.join(launch, runtime)
    rank, world = (0, 1) if group is None else (group.rank, group.world_size)
    pairs = number_words(count=args.pairs).pairs
    source = Vocabulary.build(s for s, _ in pairs)
    target = Vocabulary.build(t for _, t in pairs)
    src = [source.encode(s) for s, _ in pairs]
    tgt = [target.encode(t) for _, t in pairs]
    spec = ModelSpec(
        src_vocab_size=len(source),
        tgt_vocab_size=len(target),
        hidden_size=args.hidden_size,
        embedding_size=64,
    )
    model = backend.create(
        spec, seed=0, optimizer=OptimizerSpec(), runtime=replace(runtime, group=group)
    )
    rng = np.random.default_rng(0)

    def plan():  # epoch after epoch, as the trainer walks them
        per_rank = args.batch_size // world
        while True:
            yield from shards(src, tgt, per_rank, rank=rank, world_size=world, rng=rng)

    steps = plan()
    updates = [next(steps) for _ in range(3 + args.updates)]

    def update(batch, total: int) -> None:
        if group is None:
            model.train_step([batch])
        else:
            share = model.train_step([] if batch is None else [batch], total_tokens=total)
            group.all_reduce([share, 0.0, 0.0])

    for batch, total in updates[:3]:
        update(batch, total)
    if group is not None:
        group.barrier()
    start = time.perf_counter()
    for batch, total in updates[3:]:
        update(batch, total)
    if group is not None:
        group.barrier()
    seconds = time.perf_counter() - start
    if rank == 0:
        tokens = sum(total for _, total in updates[3:])
        figures = {"world_size": world, "seconds": seconds, "target_tokens": tokens}
        Path(args.json).write_text(json.dumps(figures))
    if group is not None:
        group.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run(processes: int, args: argparse.Namespace, out: Path) -> float:
    """Target tokens/s of one torchrun run with ``processes`` processes."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(processes),
        "--master-addr", "127.0.0.1", "--master-port", str(free_port()),
        __file__, "--worker", "--json", str(out), "--updates", str(args.updates),
        "--batch-size", str(args.batch_size), "--hidden-size", str(args.hidden_size),
        "--pairs", str(args.pairs),
    ]  # fmt: skip
    if args.find_unused_parameters:
        command.append("--find-unused-parameters")
    subprocess.run(command, env=env, check=True)
    figures = json.loads(out.read_text())
    return figures["target_tokens"] / figures["seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--updates", type=int, default=40, help="timed updates per run")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each world size")
    parser.add_argument("--batch-size", type=int, default=64, help="global batch (sentences)")
    parser.add_argument("--hidden-size", type=int, default=256)
    parser.add_argument("--pairs", type=int, default=1000, help="num2words pairs")
    parser.add_argument("--find-unused-parameters", action="store_true")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--json", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    rates: dict[int, list[float]] = {1: [], 2: []}
    loads = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeats):
            for processes in (1, 2):
                rates[processes].append(run(processes, args, Path(tmp, "figures.json")))
                loads.append(os.getloadavg()[0])
    one, two = (statistics.median(rates[n]) for n in (1, 2))
    print(
        f"torch, LSTM hidden {args.hidden_size}, global batch {args.batch_size}, "
        f"{args.updates} updates, gloo on loopback, 1 thread per process"
        + (", find_unused_parameters=True" if args.find_unused_parameters else "")
    )
    print(f"1 process:   {one:8.0f} target tokens/s  (runs: {rates[1]})")
    print(f"2 processes: {two:8.0f} target tokens/s  (runs: {rates[2]})")
    print(
        f"scaling: {two / one:.2f}x on {len(os.sched_getaffinity(0))} usable cores; the "
        f"cores may be shared with other work (1-minute load average {min(loads):.1f} to "
        f"{max(loads):.1f} during the runs)"
    )


if __name__ == "__main__":
    main()
