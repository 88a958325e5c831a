"""Passes to a certificate against how long EM runs before the Newton finish.

softmax-over (k* = 2, d = 1) fitted with k = 4 at n = 1e4 and k = 3 at n = 5e4, 10
replications from the papers' near-truth start, Numba, papers.md's parameter space; EM
hands over to the finish after ``finish_after`` iterations (``None``: EM runs to its
relative tol 1e-6). Writes ``benchmarks/results/check_finish_after.json``.

Run: ``python benchmarks/check_finish_after.py``
"""

import json
import os
import time
import warnings
from pathlib import Path

import numpy as np

from moestats import SoftmaxGate, get_setup, near_truth_init
from moestats.solvers import THEORY_SPACE, fit_em_batched

OUT = Path(__file__).parent / "results" / "check_finish_after.json"


def main(R=10, seed=5):
    warnings.simplefilter("ignore")
    truth = get_setup("softmax-over").truth
    results = []
    for k, n in [(4, 10_000), (3, 50_000)]:
        rng = np.random.default_rng(seed)
        data = [truth.sample(n, rng) for _ in range(R)]
        X, y = np.stack([a for a, _ in data]), np.stack([b for _, b in data])
        inits = [near_truth_init(truth.params, k, n, rng)[0] for _ in range(R)]
        for after in (10, 20, None):
            load = os.getloadavg()
            start = time.perf_counter()
            traces = fit_em_batched(SoftmaxGate(), X, y, inits, backend="numba",
                                    space=THEORY_SPACE, finish_after=after)
            row = dict(k=k, n=n, R=R, finish_after=after,
                       wall_s_per_fit=(time.perf_counter() - start) / R,
                       passes_median=float(np.median([t.passes for t in traces])),
                       passes_max=int(max(t.passes for t in traces)),
                       certified=int(sum(t.converged for t in traces)),
                       log_likelihoods=[t.log_likelihood for t in traces],
                       load_before=load, load_after=os.getloadavg())
            results.append(row)
            print({key: v for key, v in row.items() if key != "log_likelihoods"})
    OUT.write_text(json.dumps(dict(nproc=os.cpu_count(), rows=results), indent=1))
    print(f"written to {OUT}")


if __name__ == "__main__":
    main()
