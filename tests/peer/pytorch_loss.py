#!/usr/bin/env python3
"""Times PyTorch on the combined distillation loss and its gradient, on the shapes and thread
counts of tests/benchmarks/bench_loss.c, and prints the ratio to libkd's times read from the
benchmark's --json output.

Not part of ctest (PyTorch is not a build dependency). Needs Debian's python3-torch:

    build/release/tests/benchmarks/bench_loss --json /tmp/bench_loss.json
    /usr/bin/python3 tests/peer/pytorch_loss.py /tmp/bench_loss.json [--json OUT] [--reps N]

The loss (the same as the benchmark's: KL at T = 4, alpha = 0.5, reduction mean, labels):

    alpha * T * T * F.kl_div(F.log_softmax(s / T, 1), F.softmax(t / T, 1), reduction="batchmean")
        + (1 - alpha) * F.cross_entropy(s, y)

timed forward and backward (the gradient with respect to s), float32, on random N(0, 2^2)
logits, with torch.set_num_threads(threads). Best and median of the repetitions after one
warm-up; the ratio is PyTorch's best time over libkd's best time.
"""
import json
import statistics
import sys
import time

try:
    import torch
    import torch.nn.functional as F
except ImportError as missing:
    sys.exit(f"pytorch_loss.py: {missing}: this peer needs Debian's python3-torch and python3-numpy "
             "(apt-get install python3-torch); it is not a build or test dependency")


def loss_and_grad(s, t, y, temperature, alpha):
    s.grad = None
    soft = F.kl_div(F.log_softmax(s / temperature, 1), F.softmax(t / temperature, 1),
                    reduction="batchmean")
    total = alpha * temperature * temperature * soft + (1 - alpha) * F.cross_entropy(s, y)
    total.backward()
    return total


def time_shape(rows, classes, threads, temperature, alpha, reps):
    torch.set_num_threads(threads)
    generator = torch.Generator().manual_seed(rows * 1000003 + classes)
    s = (2 * torch.randn(rows, classes, generator=generator)).requires_grad_(True)
    t = 2 * torch.randn(rows, classes, generator=generator)
    y = torch.randint(0, classes, (rows,), generator=generator)
    start = time.perf_counter()
    loss_and_grad(s, t, y, temperature, alpha)  # warm-up
    first = time.perf_counter() - start
    if reps is None:
        reps = max(3, min(30, int(2.0 / max(first, 1e-6))))
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        loss_and_grad(s, t, y, temperature, alpha)
        times.append(time.perf_counter() - start)
    return min(times), statistics.median(times), reps


def main():
    args = sys.argv[1:]
    out_path, reps = None, None
    if "--json" in args:
        out_path = args[args.index("--json") + 1]
    if "--reps" in args:
        reps = int(args[args.index("--reps") + 1])
    with open(args[0]) as f:
        libkd = json.load(f)
    temperature, alpha = libkd["temperature"], libkd["alpha"]
    print(f"PyTorch {torch.__version__}, KL at T = {temperature:g}, alpha = {alpha:g}, mean; "
          f"libkd {libkd['library']} ({libkd['kernels']} kernels) from {args[0]}\n")
    print("| shape | threads | PyTorch best ms | PyTorch median ms | PyTorch GB/s | libkd best ms "
          "| PyTorch / libkd |")
    print("|---|---|---|---|---|---|---|")
    results = []
    for entry in libkd["results"]:
        rows, classes, threads = entry["rows"], entry["classes"], entry["threads"]
        best, median, n = time_shape(rows, classes, threads, temperature, alpha, reps)
        ratio = best / entry["libkd_s"]["best"]
        gbps = 12.0 * rows * classes / best * 1e-9
        print(f"| {rows}x{classes} | {threads} | {best * 1e3:.3f} | {median * 1e3:.3f} | "
              f"{gbps:.3f} | {entry['libkd_s']['best'] * 1e3:.3f} | {ratio:.1f} |")
        sys.stdout.flush()
        results.append({"rows": rows, "classes": classes, "threads": threads, "reps": n,
                        "pytorch_s": {"best": best, "median": median}, "pytorch_gbps": gbps,
                        "libkd_best_s": entry["libkd_s"]["best"], "ratio": ratio})
    if out_path:
        with open(out_path, "w") as f:
            json.dump({"pytorch": torch.__version__, "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
