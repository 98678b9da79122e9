"""The fedau-participation preset (docs/algorithms.md §1.5) in numpy, the way a researcher would write it fast: all
3 patterns × 4 algorithms × S seeds advance together as arrays ([runs, clients, d]), one Python loop over rounds.
bench/simulate.ts runs it beside `fedpool simulate --preset fedau-participation --seeds S` and compares times; the
errors it prints are the same experiment (different random streams), so they must agree statistically.

  python3 bench/simulate_numpy.py [--seeds 3] [--rounds 3000]
"""
import argparse
import json
import time

import numpy as np

N, D, I, GAMMA = 100, 10, 5, 0.1
PATTERNS = ["bernoulli", "markov-0.05", "cyclic-100"]
ALGORITHMS = ["fedau", "known-1/p", "avg-participating", "avg-all"]


def run(seeds: int, rounds: int) -> tuple[float, dict]:
    rng = np.random.default_rng(12345)
    t0 = time.perf_counter()
    S, P, A = seeds, len(PATTERNS), len(ALGORITHMS)
    # Tasks per seed: centres c_n = 3(2z_n − 1)e1 + 0.5 N(0, I), p_n = 0.02 + 0.48 z_n².
    z = rng.random((S, N))
    c = 0.5 * rng.standard_normal((S, N, D))
    c[:, :, 0] += 3 * (2 * z - 1)
    p = 0.02 + 0.48 * z**2
    xstar = c.mean(axis=1)  # [S, D]
    # Runs laid out [P, A, S]; participation is shared by the algorithms of one (pattern, seed).
    x = np.zeros((P, A, S, D))
    avg = np.zeros_like(x)
    gap = np.zeros((P, A, S, N))
    tot = np.zeros_like(gap)
    cnt = np.zeros_like(gap)
    # Markov: q = 0.05 up, q(1/p − 1) down (clipped at 1 with q rescaled, as §1.3).
    q = 0.05
    down = q * (1 / p - 1)
    up = np.where(down > 1, p / (1 - p), q)
    down = np.minimum(down, 1)
    on = rng.random((S, N)) < p
    # Cyclic L = 100: active max(1, round(Lp)) rounds, inactive max(1, L − active), random phase, starts inactive.
    L = 100
    act = np.maximum(1, np.rint(L * p)).astype(int)
    inact = np.maximum(1, L - act).astype(int)
    cyc_on = np.zeros((S, N), dtype=bool)
    to_switch = (rng.random((S, N)) * inact).astype(int)
    decay = (1 - GAMMA) ** I
    noise_std = GAMMA * np.sqrt(sum((1 - GAMMA) ** (2 * k) for k in range(I)))
    lr_all = 1 / p.mean(axis=1)  # [S]
    tail = rounds // 2
    for t in range(rounds):
        bern = rng.random((S, N)) < p
        if t > 0:
            u = rng.random((S, N))
            on = np.where(on, u >= down, u < up)
        switch = to_switch == 0
        cyc_on = np.where(switch, ~cyc_on, cyc_on)
        to_switch = np.where(switch, np.where(cyc_on, act, inact), to_switch) - 1
        mask = np.stack([bern, on, cyc_on])[:, None, :, :]  # [P, 1, S, N]
        # Closed-form local SGD: Δ = (1 − (1−γ)^I)(c − x) + σ ξ; noise drawn for the participants only.
        delta = (1 - decay) * (c[None, None] - x[:, :, :, None, :])
        m = np.broadcast_to(mask, gap.shape)
        delta[m] += noise_std * rng.standard_normal((int(m.sum()), D))
        w = np.where(cnt > 0, tot / np.maximum(cnt, 1), 1.0)  # FedAU ω, from completed intervals only
        k = mask.sum(axis=3, keepdims=True)  # participants
        weights = np.empty((P, A, S, N))
        weights[:, 0] = w[:, 0] / N
        weights[:, 1] = (1 / p)[None] / N
        weights[:, 2] = 1 / np.maximum(k[:, 0], 1)
        weights[:, 3] = lr_all[None, :, None] / N
        weights *= mask
        x += np.einsum("pasn,pasnd->pasd", weights, delta)
        # FedAU bookkeeping (K = ∞): a participation closes the interval gap + 1.
        tot += np.where(m, gap + 1, 0)
        cnt += m
        gap = np.where(m, 0, gap + 1)
        if t >= rounds - tail:
            avg += x
    xa = avg / tail
    err = 0.5 * ((xa - xstar[None, None]) ** 2).sum(axis=-1)  # [P, A, S]
    seconds = time.perf_counter() - t0
    return seconds, {f"{PATTERNS[i]}/{ALGORITHMS[j]}": float(err[i, j].mean()) for i in range(P) for j in range(A)}


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3000)
    a = ap.parse_args()
    seconds, errors = run(a.seeds, a.rounds)
    print(json.dumps({"seconds": seconds, "runs": 12 * a.seeds, "numpy": np.__version__, "errors": errors}))
