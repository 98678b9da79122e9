#!/usr/bin/env python3
"""Reference (oracle) implementation of fedpool's aggregation library, in plain float64 numpy.

Written from the formulas in the README ("Library") and docs/algorithms.md §1.2 / §2.3 / §5, not from the
TypeScript. It favours obviousness over speed: every rule is a few vectorised lines that read like its formula.

Protocol (one request in, one response out):

  stdin  : one JSON object
    {
      "arrays": [ {"shape": [n, d], "f32": "<base64 of little-endian float32, row-major>"}, ... ],   # optional
      "cases":  [ {"id": "any string", "op": "<op>", ...params}, ... ]
    }
  stdout : one JSON object
    {
      "numpy": "<numpy version>",
      "results": [ {"id": ..., "shape": [...], "f64": "<base64 of little-endian float64, row-major>"}
                   or {"id": ..., "error": "<message>"}, ... ]            # same order as "cases"
    }

  Vector/matrix parameters ("updates", "center") are either inline JSON (a list of lists / a list) or an integer
  index into "arrays". Inputs travel as float32 so the oracle sees exactly the Float32Array values fedpool sees;
  results travel as float64 so the oracle's answer is not rounded on the way back. Infinity is spelled null
  (JSON has no Infinity) for "tau" and "cutoff".

  ops and their parameters:
    weighted_mean        updates, weights? (list; omitted = plain mean)
    coordinate_median    updates
    trimmed_mean         updates, f
    krum                 updates, f
    multi_krum           updates, f, m? (default n-f)
    geometric_median     updates, tol? (1e-7), max_iter? (1000)
    centered_clipping    updates, center, tau (null = inf), iters? (1)
    nnm                  updates, f                      -> shape [n, d]
    nna                  updates, f, pivot
    nnm_then             updates, f, rule, + the rule's params: rule in {mean, median, trimmed_mean, krum,
                         multi_krum, geometric_median, centered_clipping}; the rule is applied to the NNM rows
                         (centered_clipping there takes tau, iters and center, default 0)
    fedau                num_clients, cutoff (null = inf), rounds: [[participant indices], ...]
                         -> shape [T+1, N]: row t = every client's weight read before round t (row T: after the last)
    staleness            spec: {"kind": "constant"} | {"kind": "poly", "exponent": a} | {"kind": "hinge", "a", "b"},
                         taus: [...]                     -> shape [len(taus)]

  Exit status: 0 on success (per-case problems are reported as "error" entries), 2 on a malformed request,
  3 when numpy is missing.
"""
import base64
import json
import math
import sys

try:
    import numpy as np
except ImportError as e:  # pragma: no cover - the test reports this verbatim
    sys.stderr.write(f"aggregate_ref.py: numpy is required but could not be imported ({e}); pip install numpy\n")
    sys.exit(3)

EPS = 1e-12  # Weiszfeld's distance floor


# ---------------------------------------------------------------------------------------------------------------
# Distances and orderings
# ---------------------------------------------------------------------------------------------------------------

def sq_dists(X):
    """n x n squared L2 distances by direct differences (exactly 0 between identical rows)."""
    diff = X[:, None, :] - X[None, :, :]
    return np.einsum("ijk,ijk->ij", diff, diff)


def others_by_distance(D, i):
    """Indices j != i ordered by (D[i, j], j): a stable sort of the index-ordered list is exactly that."""
    others = np.array([j for j in range(D.shape[0]) if j != i], dtype=np.int64)
    return others[np.argsort(D[i, others], kind="stable")]


# ---------------------------------------------------------------------------------------------------------------
# Rules
# ---------------------------------------------------------------------------------------------------------------

def weighted_mean(X, w=None):
    if w is None:
        return X.mean(axis=0)
    w = np.asarray(w, dtype=np.float64)
    return (w @ X) / w.sum()


def coordinate_median(X):
    return np.median(X, axis=0)  # even n: mean of the two middle values


def trimmed_mean(X, f):
    n = X.shape[0]
    assert n > 2 * f, "trimmed_mean needs n > 2f"
    return np.sort(X, axis=0)[f:n - f].mean(axis=0)


def krum_scores(D, f):
    """score(i) = sum of the n-f-2 smallest squared distances from i to the *other* inputs."""
    n = D.shape[0]
    k = n - f - 2
    scores = np.empty(n)
    for i in range(n):
        others = np.delete(D[i], i)
        scores[i] = np.sort(others)[:k].sum()
    return scores


def krum_order(D, f):
    """Indices by (score, index): stable argsort."""
    return np.argsort(krum_scores(D, f), kind="stable")


def krum(X, f, D=None):
    n = X.shape[0]
    assert n > 2 * f + 2, "krum needs n > 2f+2"
    D = sq_dists(X) if D is None else D
    return X[krum_order(D, f)[0]].copy()


def multi_krum(X, f, m=None, D=None):
    n = X.shape[0]
    assert n > 2 * f + 2, "multi_krum needs n > 2f+2"
    m = n - f if m is None else m
    assert 1 <= m <= n
    D = sq_dists(X) if D is None else D
    return X[krum_order(D, f)[:m]].mean(axis=0)


def geometric_median(X, tol=1e-7, max_iter=1000):
    z = X.mean(axis=0)
    for _ in range(max_iter):
        dist = np.maximum(np.linalg.norm(X - z, axis=1), EPS)
        beta = 1.0 / dist
        z_new = (beta @ X) / beta.sum()
        step = np.linalg.norm(z_new - z)
        z = z_new
        if step <= tol * max(1.0, np.linalg.norm(z_new)):
            break
    return z


def centered_clipping(X, center, tau, iters=1):
    n = X.shape[0]
    v = np.asarray(center, dtype=np.float64).copy()
    for _ in range(iters):
        diff = X - v
        norms = np.linalg.norm(diff, axis=1)
        scale = np.zeros(n)
        nz = norms > 0  # a zero-norm term contributes 0
        scale[nz] = np.minimum(1.0, tau / norms[nz])
        v = v + (scale @ diff) / n
    return v


def nnm_selection(D, f):
    """0/1 matrix A: row i selects input i and its n-f-1 nearest others (ties -> lower index)."""
    n = D.shape[0]
    A = np.zeros((n, n))
    for i in range(n):
        A[i, i] = 1.0
        A[i, others_by_distance(D, i)[: n - f - 1]] = 1.0
    return A


def nnm(X, f):
    n = X.shape[0]
    assert n > 2 * f, "nnm needs n > 2f"
    return (nnm_selection(sq_dists(X), f) @ X) / (n - f)


def nna(X, f, pivot):
    return nnm(X, f)[pivot]


def nnm_then(X, f, rule, params):
    """Apply `rule` to the materialised NNM rows Y = (A @ X) / (n - f)."""
    n = X.shape[0]
    assert n > 2 * f, "nnm needs n > 2f"
    S = nnm_selection(sq_dists(X), f) @ X  # row sums of each neighbourhood
    Y = S / (n - f)
    if rule in ("krum", "multi_krum"):
        # Krum's choice depends only on the order of distances, which scaling by 1/(n-f) preserves; computing
        # them on the neighbourhood *sums* keeps exact ties exact for integer-valued inputs (no 1/3-type rounding).
        D = sq_dists(S)
        if rule == "krum":
            return krum(Y, f, D)
        return multi_krum(Y, f, params.get("m"), D)
    if rule == "mean":
        return Y.mean(axis=0)
    if rule == "median":
        return coordinate_median(Y)
    if rule == "trimmed_mean":
        return trimmed_mean(Y, f)
    if rule == "geometric_median":
        return geometric_median(Y, params.get("tol", 1e-7), params.get("max_iter", 1000))
    if rule == "centered_clipping":
        center = params.get("center")
        center = np.zeros(X.shape[1]) if center is None else center
        return centered_clipping(Y, center, params["tau"], params.get("iters", 1))
    raise ValueError(f"unknown rule {rule!r}")


def fedau(num_clients, cutoff, rounds):
    """IBM/fedau main.py semantics (docs/algorithms.md §1.2); returns the weight of every client before each round."""
    K = math.inf if cutoff is None else cutoff
    gap = np.zeros(num_clients)
    s = np.zeros(num_clients)
    cnt = np.zeros(num_clients)

    def weights():
        return np.where(cnt > 0, s / np.maximum(cnt, 1), 1.0)

    out = [weights()]
    for participants in rounds:
        took = np.zeros(num_clients, dtype=bool)
        took[list(participants)] = True
        for n in range(num_clients):
            if took[n]:
                s[n] += gap[n] + 1
                cnt[n] += 1
                gap[n] = 0
            else:
                gap[n] += 1
                if gap[n] >= K:
                    s[n] += gap[n]
                    cnt[n] += 1
                    gap[n] = 0
        out.append(weights())
    return np.array(out)


def staleness(spec, taus):
    taus = np.asarray(taus, dtype=np.float64)
    kind = spec["kind"]
    if kind == "constant":
        return np.ones_like(taus)
    if kind == "poly":
        return (1.0 + taus) ** (-spec["exponent"])
    if kind == "hinge":
        a, b = spec["a"], spec["b"]
        out = np.ones_like(taus)
        late = taus > b
        out[late] = 1.0 / (a * (taus[late] - b) + 1.0)
        return out
    raise ValueError(f"unknown staleness kind {kind!r}")


# ---------------------------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------------------------

def decode_array(spec):
    raw = base64.b64decode(spec["f32"])
    return np.frombuffer(raw, dtype="<f4").astype(np.float64).reshape(spec["shape"])


def resolve(value, arrays):
    if value is None:
        return None
    if isinstance(value, int):
        return arrays[value]
    return np.asarray(value, dtype=np.float32).astype(np.float64)  # inline JSON: round to float32 like the TS side


def tau_of(c):
    return math.inf if c.get("tau") is None else float(c["tau"])


def run_case(c, arrays):
    op = c["op"]
    if op == "fedau":
        return fedau(c["num_clients"], c.get("cutoff"), c["rounds"])
    if op == "staleness":
        return staleness(c["spec"], c["taus"])
    X = resolve(c["updates"], arrays)
    if X.ndim != 2 or X.shape[0] == 0:
        raise ValueError("updates must be a non-empty n x d array")
    if op == "weighted_mean":
        return weighted_mean(X, c.get("weights"))
    if op == "coordinate_median":
        return coordinate_median(X)
    if op == "trimmed_mean":
        return trimmed_mean(X, c["f"])
    if op == "krum":
        return krum(X, c["f"])
    if op == "multi_krum":
        return multi_krum(X, c["f"], c.get("m"))
    if op == "geometric_median":
        return geometric_median(X, c.get("tol", 1e-7), c.get("max_iter", 1000))
    if op == "centered_clipping":
        return centered_clipping(X, resolve(c["center"], arrays), tau_of(c), c.get("iters", 1))
    if op == "nnm":
        return nnm(X, c["f"])
    if op == "nna":
        return nna(X, c["f"], c["pivot"])
    if op == "nnm_then":
        params = {k: v for k, v in c.items() if k in ("m", "tol", "max_iter", "iters")}
        if c["rule"] == "centered_clipping":
            params["tau"] = tau_of(c)
            params["center"] = resolve(c.get("center"), arrays)
        return nnm_then(X, c["f"], c["rule"], params)
    raise ValueError(f"unknown op {op!r}")


def main():
    try:
        req = json.loads(sys.stdin.read())
        arrays = [decode_array(a) for a in req.get("arrays", [])]
        cases = req["cases"]
    except Exception as e:  # noqa: BLE001
        sys.stderr.write(f"aggregate_ref.py: malformed request: {e!r}\n")
        return 2
    results = []
    for c in cases:
        try:
            out = np.ascontiguousarray(run_case(c, arrays), dtype="<f8")
            results.append({
                "id": c.get("id"),
                "shape": list(out.shape),
                "f64": base64.b64encode(out.tobytes()).decode("ascii"),
            })
        except Exception as e:  # noqa: BLE001
            results.append({"id": c.get("id"), "error": f"{type(e).__name__}: {e}"})
    sys.stdout.write(json.dumps({"numpy": np.__version__, "results": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
