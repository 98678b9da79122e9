#!/usr/bin/env python3
"""numpy side of bench/aggregate.ts: the same aggregation cases, written the fastest idiomatic numpy way.

Usage: python3 bench/aggregate_numpy.py [--quick] [--runs N]
Prints one JSON object on stdout:
  {"numpy": ver, "python": ver, "blas": {...}, "results": [{"key": rule, "ms": best, "note": str}, ...]}

It makes its own data of the same sizes as the TS side (float32, standard normal; the weights uniform in (0.01, 5]).
Each case: one warm-up call, then the best of --runs timed calls. bench/aggregate.ts starts it with
OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE removed from the environment (they slow a current numpy), and "blas"
reports which OpenBLAS kernel numpy then runs.
"""
import argparse
import ctypes
import glob
import json
import os
import platform
import sys
import time

import numpy as np


def blas_info():
    info = {}
    try:
        import threadpoolctl  # type: ignore

        pools = [p for p in threadpoolctl.threadpool_info() if p.get("user_api") == "blas"]
        if pools:
            p = pools[0]
            info.update(source="threadpoolctl", name=p.get("internal_api"), version=p.get("version"),
                        corename=p.get("architecture"), threads=p.get("num_threads"))
            return info
    except ImportError:
        pass
    deps = np.show_config(mode="dicts").get("Build Dependencies", {}).get("blas", {})
    info.update(source="np.show_config", name=deps.get("name"), version=deps.get("version"),
                config=deps.get("openblas configuration"))
    # threadpoolctl is not installed: ask the OpenBLAS that numpy bundles directly, as threadpoolctl would.
    libdir = os.path.join(os.path.dirname(np.__file__), os.pardir, "numpy.libs")
    for path in glob.glob(os.path.join(libdir, "*openblas*.so*")):
        try:
            lib = ctypes.CDLL(path)
            for prefix, suffix in (("scipy_openblas_", "64_"), ("openblas_", "")):
                core = getattr(lib, f"{prefix}get_corename{suffix}", None)
                threads = getattr(lib, f"{prefix}get_num_threads{suffix}", None)
                if core is not None:
                    core.restype = ctypes.c_char_p
                    info["corename"] = core().decode()
                    if threads is not None:
                        threads.restype = ctypes.c_int
                        info["threads"] = threads()
                    info["source"] += " + OpenBLAS get_corename"
                    return info
        except OSError:
            continue
    return info


def best_ms(fn, runs):
    fn()  # warm-up
    best = float("inf")
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best * 1e3


# --------------------------------------------------------------------------------------------------------------
# The rules, fastest idiomatic numpy
# --------------------------------------------------------------------------------------------------------------

def weighted_mean(X, w):
    return (w / w.sum()).astype(np.float32) @ X  # one sgemv


def sq_dists(X):
    """Gram trick: ||xi||^2 + ||xj||^2 - 2 xi.xj (one sgemm)."""
    sq = np.einsum("ij,ij->i", X, X)
    D = sq[:, None] + sq[None, :] - 2.0 * (X @ X.T)
    np.maximum(D, 0, out=D)
    np.fill_diagonal(D, 0)
    return D


def nnm(X, f):
    n = X.shape[0]
    D = sq_dists(X)
    np.fill_diagonal(D, -np.inf)  # each row's own input first
    idx = np.argsort(D, axis=1, kind="stable")[:, : n - f]
    A = np.zeros((n, n), dtype=np.float32)
    A[np.arange(n)[:, None], idx] = 1.0 / (n - f)
    return A @ X  # selection-matrix product (sgemm)


def krum(X, f):
    n = X.shape[0]
    D = sq_dists(X)
    np.fill_diagonal(D, np.inf)
    scores = np.sort(D, axis=1)[:, : n - f - 2].sum(axis=1)
    return X[np.argmin(scores)].copy()


def trimmed_mean(X, f):
    n = X.shape[0]
    return np.sort(X, axis=0)[f : n - f].mean(axis=0)


def geometric_median(X, tol=1e-7, max_iter=1000):
    X64 = X.astype(np.float64)
    sq = np.einsum("ij,ij->i", X64, X64)
    z = X64.mean(axis=0)
    for it in range(1, max_iter + 1):
        dist = np.sqrt(np.maximum(sq - 2.0 * (X64 @ z) + z @ z, 0.0))
        beta = 1.0 / np.maximum(dist, 1e-12)
        z_new = (beta @ X64) / beta.sum()
        step = np.linalg.norm(z_new - z)
        z = z_new
        if step <= tol * max(1.0, np.linalg.norm(z)):
            break
    geometric_median.iterations = it
    return z


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--runs", type=int, default=5)
    a = ap.parse_args()
    nA, dA = (10, 100_000) if a.quick else (50, 1_000_000)
    nB, dB, f = (12, 20_000, 2) if a.quick else (30, 200_000, 5)

    rng = np.random.default_rng(12345)
    XA = rng.standard_normal((nA, dA), dtype=np.float32)
    w = rng.uniform(0.01, 5.0, nA)
    XB = rng.standard_normal((nB, dB), dtype=np.float32)

    results = []

    def add(key, fn, note=""):
        results.append({"key": key, "ms": best_ms(fn, a.runs), "note": note})

    add("weightedMean", lambda: weighted_mean(XA, w), "w @ X (float32 sgemv)")
    add("nearestNeighborMixing", lambda: nnm(XB, f), "Gram sgemm, argsort, A @ X")
    add("coordinateMedian", lambda: np.median(XB, axis=0), "np.median(axis=0)")
    add("trimmedMean", lambda: trimmed_mean(XB, f), "np.sort(axis=0) slice mean")
    add("krum", lambda: krum(XB, f), "Gram sgemm, np.sort rows")
    add("geometricMedian", lambda: geometric_median(XB), "")
    results[-1]["note"] = f"Weiszfeld float64, {geometric_median.iterations} iterations"

    json.dump({
        "numpy": np.__version__,
        "python": platform.python_version(),
        "blas": blas_info(),
        "env": {k: os.environ.get(k) for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")},
        "results": results,
    }, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
