"""PyTorch 1.13 peer for the precision benchmark: fortunes-lm as train_lm trains it.

The same Transformer (docs/BENCHMARKS.md: 4 layers, d_model 256, 4 heads, FFN 1024,
context 128, tied byte embedding and head, GPT-2 initialization), AdamW lr 3e-4, batch 32
random windows of the fortunes text, in fp32 or under torch.autocast("cpu", torch.bfloat16),
in one process or as N DistributedDataParallel ranks over gloo (each rank a share of the
batch). Prints one JSON object: tokens/s of the global batch, measured after a warm-up,
and the mean loss of the last 10 steps.

    /usr/bin/python3 bench/lm_peer.py --precision bf16 --threads 1 --steps 40
    /usr/bin/python3 bench/lm_peer.py --precision bf16 --steps 4 --profile /tmp/torch_bf16.json

With --profile (one process) the steps after the first are recorded with torch.profiler
into a chrome trace for bench/profile_ops.py.
"""
import argparse
import json
import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ddp_peer import join, launch  # noqa: E402  the same process set-up as the fmnist peer


def load_corpus(data_dir):
    """The train split as strata's TextCorpus makes it: 90% of the files in name order."""
    import torch

    names = sorted(n for n in os.listdir(data_dir)
                   if not n.startswith(".") and not n.endswith((".dat", ".u8"))
                   and os.path.isfile(os.path.join(data_dir, n)))
    train = bytearray()
    for i, name in enumerate(names):
        if i < max(1, int(len(names) * 0.9)):
            with open(os.path.join(data_dir, name), "rb") as f:
                train += f.read()
    return torch.frombuffer(train, dtype=torch.uint8).long()


def make_model(args):
    import torch
    from torch import nn
    import torch.nn.functional as F

    class Block(nn.Module):
        def __init__(self, d, heads, ffn):
            super().__init__()
            self.heads = heads
            self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
            self.qkv, self.out = nn.Linear(d, 3 * d), nn.Linear(d, d)
            self.ffn_in, self.ffn_out = nn.Linear(d, ffn), nn.Linear(ffn, d)

        def attention(self, x):
            b, t, d = x.shape
            hd = d // self.heads
            q, k, v = self.qkv(x).view(b, t, 3, self.heads, hd).permute(2, 0, 3, 1, 4)
            scores = q @ k.transpose(-2, -1) / math.sqrt(hd)
            mask = torch.ones(t, t, dtype=torch.bool).triu(1)
            p = torch.softmax(scores.masked_fill(mask, float("-inf")), -1)
            return self.out((p @ v).transpose(1, 2).reshape(b, t, d))

        def forward(self, x):
            h = x + self.attention(self.norm1(x))
            return h + self.ffn_out(F.gelu(self.ffn_in(self.norm2(h))))

    class LM(nn.Module):
        def __init__(self):
            super().__init__()
            self.token = nn.Embedding(256, args.d_model)
            self.position = nn.Embedding(args.context, args.d_model)
            self.blocks = nn.ModuleList(Block(args.d_model, args.heads, args.ffn)
                                        for _ in range(args.layers))
            self.norm = nn.LayerNorm(args.d_model)
            for m in self.modules():
                if isinstance(m, nn.Linear):
                    nn.init.normal_(m.weight, 0.0, 0.02)
                    nn.init.zeros_(m.bias)
                elif isinstance(m, nn.Embedding):
                    nn.init.normal_(m.weight, 0.0, 0.02)

        def forward(self, tokens):
            x = self.token(tokens) + self.position(torch.arange(tokens.shape[1]))
            for block in self.blocks:
                x = block(x)
            return F.linear(self.norm(x), self.token.weight)

    return LM()


def run(rank, args, port):
    import torch
    import torch.distributed as dist
    import torch.nn.functional as F

    model = join(rank, args, port, lambda: make_model(args))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=0.01)
    text = load_corpus(args.data_dir)
    local = args.batch // args.ranks
    warmup = min(10, args.steps // 10)
    losses, start = [], None
    profiler = None
    if args.profile:
        warmup = 1
    for step in range(args.steps):
        if args.profile and step == warmup:
            profiler = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU])
            profiler.__enter__()
        if step == warmup:
            if args.ranks > 1:
                dist.barrier()
            start = time.perf_counter()
        g = torch.Generator().manual_seed(args.seed * 1000003 + step)
        starts = torch.randint(0, text.numel() - args.context - 1, (args.batch,), generator=g)
        starts = starts[rank * local:(rank + 1) * local]
        windows = torch.stack([text[s:s + args.context + 1] for s in starts.tolist()])
        opt.zero_grad()
        with torch.autocast("cpu", torch.bfloat16, enabled=args.precision == "bf16"):
            logits = model(windows[:, :-1])
        loss = F.cross_entropy(logits.float().reshape(-1, 256), windows[:, 1:].reshape(-1))
        loss.backward()
        opt.step()
        losses.append(loss.item())
    if args.ranks > 1:
        dist.barrier()
    elapsed = time.perf_counter() - start
    if profiler is not None:
        profiler.__exit__(None, None, None)
        profiler.export_chrome_trace(args.profile)
        print(f"wrote {args.profile} ({args.steps - warmup} steps)", file=sys.stderr)
    if rank == 0:
        print(json.dumps({"tokens_per_s": (args.steps - warmup) * args.batch * args.context / elapsed,
                          "loss": sum(losses[-10:]) / len(losses[-10:]),
                          "precision": args.precision, "ranks": args.ranks,
                          "threads": args.threads}), flush=True)
    if args.ranks > 1:
        dist.destroy_process_group()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--ranks", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--context", type=int, default=128)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--d-model", type=int, default=256)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--ffn", type=int, default=1024)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", default="/usr/share/games/fortunes")
    parser.add_argument("--profile", help="chrome trace of the steps after the first (1 rank)")
    args = parser.parse_args()
    if args.profile and args.ranks != 1:
        parser.error("--profile records one process: use --ranks 1")
    launch(run, args)


if __name__ == "__main__":
    sys.exit(main())
