"""PyTorch 1.13 peer for the data-parallel benchmark: the same workload as train_fmnist.

Runs fmnist-mlp or fmnist-cnn (docs/BENCHMARKS.md) for a number of steps, in one process
or as N DistributedDataParallel ranks over gloo, in fp32 or under
torch.autocast("cpu", torch.bfloat16) (--precision bf16, the loss in fp32), and prints one
JSON object with the global samples/s measured after a warm-up. Debian's torchrun fails under Python 3.11, so
ranks are started with torch.multiprocessing.spawn and a tcp://127.0.0.1 init method.

    /usr/bin/python3 bench/ddp_peer.py --model mlp --ranks 2 --threads 1 --steps 60
    /usr/bin/python3 bench/ddp_peer.py --ranks 2 --zero-optimizer   # + ZeroRedundancyOptimizer
"""
import argparse
import gzip
import json
import os
import socket
import sys
import time


def load_train(data_dir):
    import numpy as np
    import torch

    with gzip.open(os.path.join(data_dir, "train-images-idx3-ubyte.gz")) as f:
        images = np.frombuffer(f.read(), dtype=np.uint8, offset=16).reshape(-1, 1, 28, 28)
    with gzip.open(os.path.join(data_dir, "train-labels-idx1-ubyte.gz")) as f:
        labels = np.frombuffer(f.read(), dtype=np.uint8, offset=8)
    x = (torch.from_numpy(images.astype("float32")) / 255.0 - 0.2860) / 0.3530
    return x, torch.from_numpy(labels.astype("int64"))


def make_model(name):
    from torch import nn

    if name == "mlp":
        layers = [nn.Flatten(), nn.Linear(784, 1024), nn.ReLU()]
        for _ in range(5):
            layers += [nn.Linear(1024, 1024), nn.ReLU()]
        return nn.Sequential(*layers, nn.Linear(1024, 10))
    return nn.Sequential(
        nn.Conv2d(1, 16, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(1568, 10))


def join(rank, args, port, make):
    """This rank's threads and core, the model `make` builds from args.seed, and with
    several ranks the gloo group and the DistributedDataParallel wrapper around it."""
    import torch
    import torch.distributed as dist

    torch.set_num_threads(args.threads)
    if args.ranks > 1:
        # Pinned one core per rank, as mpirun --bind-to core pins strata's ranks.
        cores = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cores[rank % len(cores)]})
    torch.manual_seed(args.seed)
    model = make()
    if args.ranks > 1:
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}",
                                rank=rank, world_size=args.ranks)
        model = torch.nn.parallel.DistributedDataParallel(model)
    return model


def run(rank, args, port):
    import torch
    import torch.distributed as dist
    import torch.nn.functional as F

    model = join(rank, args, port, lambda: make_model(args.model))
    if args.zero_optimizer and args.ranks > 1:
        # PyTorch's ZeRO stage 1: each rank keeps and steps the optimizer state of its
        # share of the parameters, then broadcasts them.
        from torch.distributed.optim import ZeroRedundancyOptimizer
        opt = ZeroRedundancyOptimizer(model.parameters(), optimizer_class=torch.optim.SGD,
                                      lr=0.05, momentum=0.9)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    x, y = load_train(args.data_dir)
    local = args.batch // args.ranks
    g = torch.Generator().manual_seed(args.seed)
    perm = torch.randperm(x.shape[0], generator=g)[rank::args.ranks]
    warmup = min(20, args.steps // 10)
    start = None
    for step in range(args.steps):
        if step == warmup:
            if args.ranks > 1:
                dist.barrier()
            start = time.perf_counter()
        first = (step * local) % (perm.numel() - local)
        idx = perm[first:first + local]
        opt.zero_grad()
        with torch.autocast("cpu", torch.bfloat16, enabled=args.precision == "bf16"):
            logits = model(x[idx])
        loss = F.cross_entropy(logits.float(), y[idx])
        loss.backward()
        opt.step()
        loss.item()
    if args.ranks > 1:
        dist.barrier()
    elapsed = time.perf_counter() - start
    if rank == 0:
        print(json.dumps({"samples_per_s": (args.steps - warmup) * args.batch / elapsed,
                          "ranks": args.ranks, "threads": args.threads, "model": args.model,
                          "precision": args.precision,
                          "zero_optimizer": args.zero_optimizer}),
              flush=True)
    if args.ranks > 1:
        dist.destroy_process_group()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(run, args):
    """run(rank, args, port) in this process, or on args.ranks spawned processes."""
    # OpenBLAS sizes its pool when it loads, so pin it before torch is imported.
    os.environ["OPENBLAS_NUM_THREADS"] = str(args.threads)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    if args.ranks == 1:
        run(0, args, 0)
    else:
        import torch.multiprocessing as mp
        mp.spawn(run, args=(args, free_port()), nprocs=args.ranks, join=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["mlp", "cnn"], default="mlp")
    parser.add_argument("--ranks", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--zero-optimizer", action="store_true",
                        help="ZeroRedundancyOptimizer around SGD (with --ranks 2 or more)")
    parser.add_argument("--data-dir", default="/usr/share/datasets/fashion-mnist")
    launch(run, parser.parse_args())


if __name__ == "__main__":
    sys.exit(main())
