#!/usr/bin/env python3
"""Accuracy of libkd's losses and gradients against PyTorch autograd in float64, next to
PyTorch's own float32 evaluation of the same expressions.

Not part of ctest (PyTorch is not a build dependency). Needs Debian's python3-torch:

    /usr/bin/python3 tests/peer/pytorch_accuracy.py build/release/lib/libkd.so.1 > docs/accuracy.md

For every divergence, temperature and class count it draws random N(0, 3^2) student and
teacher logits (fixed seed) and prints the worst relative error of the batch-mean soft value,
the combined total, and the gradient (norm-wise), for libkd (float32 in and out) and for
PyTorch float32, both against PyTorch float64 on the same float32 inputs.
"""
import ctypes
import math
import sys

try:
    import numpy as np
    import torch
    import torch.nn.functional as F
except ImportError as missing:
    sys.exit(f"pytorch_accuracy.py: {missing}: this peer needs Debian's python3-torch and python3-numpy "
             "(apt-get install python3-torch); it is not a build or test dependency")

DIVERGENCES = {0: "KL", 1: "cross-entropy", 2: "reverse KL", 3: "JSD (beta 0.5)"}
TEMPERATURES = [1e-3, 0.1, 1.0, 4.0, 20.0, 100.0, 1e3, 1e4]
SHAPES = [(64, 10), (16, 1000), (4, 32000), (1, 256000)]
ALPHA = 0.7
BETA = 0.5

KD_LOSS_PARAM_TEMPERATURE, KD_LOSS_PARAM_ALPHA, KD_LOSS_PARAM_DIVERGENCE = 0, 1, 2
KD_LOSS_PARAM_JSD_BETA = 6


def load(path):
    lib = ctypes.CDLL(path)
    fp = ctypes.POINTER(ctypes.c_float)
    lib.kd_loss_create.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_void_p]
    lib.kd_loss_set.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_double]
    lib.kd_loss_destroy.argtypes = [ctypes.c_void_p]
    lib.kd_loss_compute.argtypes = [
        ctypes.c_void_p, fp, ctypes.c_size_t, fp, ctypes.c_size_t,
        ctypes.POINTER(ctypes.c_int32), ctypes.c_size_t, ctypes.c_size_t, fp, fp, ctypes.c_size_t]
    return lib, fp


def torch_loss(s, t, y, temperature, divergence):
    """The combined loss in PyTorch, reduction mean; returns (soft, total)."""
    lp = F.log_softmax(s / temperature, 1)
    lq = F.log_softmax(t / temperature, 1)
    if divergence == 0:
        soft = F.kl_div(lp, lq, reduction="batchmean", log_target=True)
    elif divergence == 1:
        soft = -(lq.exp() * lp).sum(1).mean()
    elif divergence == 2:
        soft = F.kl_div(lq, lp, reduction="batchmean", log_target=True)
    else:
        lm = torch.logsumexp(torch.stack([lq + math.log(BETA), lp + math.log(1 - BETA)]), 0)
        soft = BETA * F.kl_div(lm, lq, reduction="batchmean", log_target=True) \
            + (1 - BETA) * F.kl_div(lm, lp, reduction="batchmean", log_target=True)
    hard = F.cross_entropy(s, y)
    return soft, ALPHA * temperature * temperature * soft + (1 - ALPHA) * hard


def torch_eval(s, t, y, temperature, divergence, dtype):
    st = torch.tensor(s, dtype=dtype, requires_grad=True)
    soft, total = torch_loss(st, torch.tensor(t, dtype=dtype), torch.tensor(y, dtype=torch.long),
                             temperature, divergence)
    total.backward()
    return soft.item(), total.item(), st.grad.double().numpy()


def rel(a, b):
    return abs(a - b) / abs(b) if b != 0 else abs(a)


def main():
    lib, fp = load(sys.argv[1] if len(sys.argv) > 1 else "build/release/lib/libkd.so.1")
    handle = ctypes.c_void_p()
    assert lib.kd_loss_create(ctypes.byref(handle), None) == 0
    lib.kd_loss_set(handle, KD_LOSS_PARAM_ALPHA, ALPHA)
    lib.kd_loss_set(handle, KD_LOSS_PARAM_JSD_BETA, BETA)
    rng = np.random.default_rng(2026)
    torch.set_num_threads(2)

    print("# Accuracy against PyTorch float64\n")
    print("Worst relative error over the shapes " + ", ".join(f"{r}x{c}" for r, c in SHAPES)
          + f", random N(0, 3^2) logits, alpha {ALPHA}, reduction mean.")
    print("Soft: the batch-mean divergence; total: alpha T^2 soft + (1 - alpha) hard; "
          "grad: ||g - g_ref|| / ||g_ref||. Reference: PyTorch 1.13 autograd in float64 on the "
          "same float32 inputs.\n")
    print("Command: `/usr/bin/python3 tests/peer/pytorch_accuracy.py build/release/lib/libkd.so.1`\n")
    print("| divergence | T | libkd soft | libkd total | libkd grad | PyTorch f32 soft | PyTorch f32 total | PyTorch f32 grad |")
    print("|---|---|---|---|---|---|---|---|")
    for divergence, name in DIVERGENCES.items():
        lib.kd_loss_set(handle, KD_LOSS_PARAM_DIVERGENCE, divergence)
        for temperature in TEMPERATURES:
            lib.kd_loss_set(handle, KD_LOSS_PARAM_TEMPERATURE, temperature)
            worst = [0.0] * 6
            for rows, classes in SHAPES:
                s = (3 * rng.standard_normal((rows, classes))).astype(np.float32)
                t = (3 * rng.standard_normal((rows, classes))).astype(np.float32)
                y = rng.integers(0, classes, rows).astype(np.int32)
                values = np.zeros(3, np.float32)
                grad = np.zeros((rows, classes), np.float32)
                status = lib.kd_loss_compute(
                    handle, s.ctypes.data_as(fp), classes, t.ctypes.data_as(fp), classes,
                    y.ctypes.data_as(ctypes.POINTER(ctypes.c_int32)), rows, classes,
                    values.ctypes.data_as(fp), grad.ctypes.data_as(fp), classes)
                assert status == 0, status
                ref_soft, ref_total, ref_grad = torch_eval(s, t, y, temperature, divergence, torch.float64)
                f32_soft, f32_total, f32_grad = torch_eval(s, t, y, temperature, divergence, torch.float32)
                norm = np.linalg.norm(ref_grad)
                errors = [rel(float(values[1]), ref_soft), rel(float(values[0]), ref_total),
                          np.linalg.norm(grad - ref_grad) / norm,
                          rel(f32_soft, ref_soft), rel(f32_total, ref_total),
                          np.linalg.norm(f32_grad - ref_grad) / norm]
                worst = [max(w, e) for w, e in zip(worst, errors)]
            print(f"| {name} | {temperature:g} | " + " | ".join(f"{e:.1e}" for e in worst) + " |")
            sys.stdout.flush()
    lib.kd_loss_destroy(handle)


if __name__ == "__main__":
    main()
