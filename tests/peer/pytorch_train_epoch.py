#!/usr/bin/env python3
"""One training epoch of the paper's networks in PyTorch, for comparison with libkd's
tests/benchmarks/bench_train_epoch (same shapes, same data sizes, same thread count).

Not part of ctest (PyTorch is not a build dependency). Needs Debian's python3-torch:

    /usr/bin/python3 tests/peer/pytorch_train_epoch.py THREADS [--json FILE] [--batches N]
                                                       [--net NAME] [--epoch-reps N]

Networks (nn.Sequential of Linear / ReLU / Dropout, float32):
  teacher-dropout  784-1200-1200-10, Dropout(0.2) on the inputs, Dropout(0.5) after each hidden
                   ReLU, max-norm 15 on each unit's incoming weights after every step
                   (torch.renorm_, as libkd's KD_MODEL_PARAM_MAX_NORM);
  teacher          784-1200-1200-10, no regularisation;
  student          784-800-800-10, no regularisation.
Epoch: 60,000 rows in 600 batches of 100 (after one warm-up batch), SGD lr 0.01 momentum 0.9,
cross-entropy on hard labels. The data are random (inputs uniform [0, 1), labels uniform
0..9, fixed seed): this measures time only.

Noise: the main thread's CPU time over the epoch is printed as a share of the wall time; on an
idle machine it is close to 100% (the thread computes, or waits spinning), clearly less when
other processes took the CPU.

Threads: torch.set_num_threads(THREADS) for ATen's OpenMP pool, and OPENBLAS_NUM_THREADS=THREADS
for the BLAS: Debian's PyTorch does its float32 matrix products in libblas.so.3 (OpenBLAS here),
which reads that variable when it is loaded, so it is set before torch is imported.
"""
import argparse
import json
import os
import sys
import time

NETS = [
    ("teacher-dropout", [784, 1200, 1200, 10], 0.2, 0.5, 15.0),
    ("teacher", [784, 1200, 1200, 10], 0.0, 0.0, 0.0),
    ("student", [784, 800, 800, 10], 0.0, 0.0, 0.0),
]
BATCH = 100


def parse():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("threads", type=int)
    p.add_argument("--json")
    p.add_argument("--batches", type=int, default=600)
    p.add_argument("--net", choices=[n[0] for n in NETS])
    p.add_argument("--epoch-reps", type=int, default=1)
    return p.parse_args()


ARGS = parse()
os.environ["OPENBLAS_NUM_THREADS"] = str(ARGS.threads)
os.environ["OMP_NUM_THREADS"] = str(ARGS.threads)

try:  # after the thread environment is set
    import torch
    from torch import nn
    import torch.nn.functional as F
except ImportError as missing:
    sys.exit(f"pytorch_train_epoch.py: {missing}: this peer needs Debian's python3-torch and python3-numpy "
             "(apt-get install python3-torch); it is not a build or test dependency")


def build(widths, input_dropout, hidden_dropout):
    layers = []
    if input_dropout > 0:
        layers.append(nn.Dropout(input_dropout))
    for i in range(1, len(widths)):
        layers.append(nn.Linear(widths[i - 1], widths[i]))
        if i < len(widths) - 1:
            layers.append(nn.ReLU())
            if hidden_dropout > 0:
                layers.append(nn.Dropout(hidden_dropout))
    return nn.Sequential(*layers)


def epoch(model, opt, x, y, batches, max_norm):
    linears = [m for m in model if isinstance(m, nn.Linear)]

    def step(b):
        xb = x[b * BATCH:(b + 1) * BATCH]
        yb = y[b * BATCH:(b + 1) * BATCH]
        opt.zero_grad()
        loss = F.cross_entropy(model(xb), yb)
        loss.backward()
        opt.step()
        if max_norm > 0:
            with torch.no_grad():
                for m in linears:
                    m.weight.renorm_(2, 0, max_norm)
        return loss

    step(0)  # warm-up
    c0, t0 = time.thread_time(), time.perf_counter()
    for b in range(batches):
        loss = step(b)
    seconds = time.perf_counter() - t0
    return seconds, time.thread_time() - c0, float(loss.item())


def main():
    torch.set_num_threads(ARGS.threads)
    torch.manual_seed(12345)
    rows = ARGS.batches * BATCH
    x = torch.rand(rows, 784)
    y = torch.randint(0, 10, (rows,))
    print(f"PyTorch {torch.__version__} training-epoch benchmark")
    print(f"torch.get_num_threads()={torch.get_num_threads()} "
          f"OPENBLAS_NUM_THREADS={os.environ['OPENBLAS_NUM_THREADS']}")
    print(f"{rows} rows ({ARGS.batches} batches of {BATCH}), SGD lr 0.01 momentum 0.9, "
          "cross-entropy on hard labels")
    print("data: random inputs uniform [0,1), random labels 0..9 (timing only)")
    results = []
    for name, widths, input_dropout, hidden_dropout, max_norm in NETS:
        if ARGS.net is not None and ARGS.net != name:
            continue
        torch.manual_seed(42)
        model = build(widths, input_dropout, hidden_dropout)
        model.train()
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        times, cpus = [], []
        for _ in range(ARGS.epoch_reps):
            seconds, cpu, loss = epoch(model, opt, x, y, ARGS.batches, max_norm)
            times.append(seconds)
            cpus.append(cpu)
        best = times.index(min(times))
        shape = "-".join(str(w) for w in widths)
        print(f"\n{name} {shape} (input dropout {input_dropout:g}, hidden dropout "
              f"{hidden_dropout:g}, max-norm {max_norm:g})")
        print(f"  epoch: {min(times):8.3f} s" +
              (f"  (best of {' '.join(f'{t:.3f}' for t in times)})" if len(times) > 1 else "") +
              f"   last batch loss {loss:.4f}; main thread on CPU {100 * cpus[best] / times[best]:.0f}% of it")
        sys.stdout.flush()
        results.append({"name": name, "widths": shape, "input_dropout": input_dropout,
                        "hidden_dropout": hidden_dropout, "max_norm": max_norm,
                        "epoch_seconds": min(times), "epoch_seconds_all": times,
                        "epoch_main_thread_cpu_seconds": cpus[best],
                        "last_batch_loss": loss})
    if ARGS.json:
        with open(ARGS.json, "w") as f:
            json.dump({"benchmark": "train_epoch", "implementation": f"PyTorch {torch.__version__}",
                       "torch_num_threads": torch.get_num_threads(),
                       "openblas_num_threads": os.environ["OPENBLAS_NUM_THREADS"],
                       "rows_per_epoch": rows, "batch": BATCH, "batches": ARGS.batches,
                       "data": "random: inputs uniform [0,1), labels uniform 0..9",
                       "optimizer": "SGD lr 0.01 momentum 0.9", "loss": "cross-entropy",
                       "networks": results}, f, indent=2)
            f.write("\n")


if __name__ == "__main__":
    main()
