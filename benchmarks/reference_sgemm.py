"""Reference (c): this machine's fp32 matrix-multiply peak, through NumPy.

``a @ b`` for float32 ``n x n`` matrices (n = 4096; 2048 with ``--quick``), one untimed
call, then the best of ``repeats`` timed calls; GFLOP/s = 2 n^3 / t / 10^9 (one multiply
and one add per inner-product term). It runs in its own process with the suite's thread
setting, so it is the peak available to a backend under the same threads. NumPy's BLAS
(OpenBLAS in the wheels) is what the NumPy backend calls; PyTorch and TensorFlow bring
their own (oneDNN / MKL / Eigen), whose peak on the same cores is similar but not equal.

    python benchmarks/reference_sgemm.py [n] [repeats]
"""

from __future__ import annotations

import sys
import time
from typing import Any


def measure(n: int = 4096, repeats: int = 5) -> dict[str, Any]:
    import numpy as np

    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    out = np.empty((n, n), dtype=np.float32)
    np.matmul(a, b, out=out)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        np.matmul(a, b, out=out)
        times.append(time.perf_counter() - start)
    best = min(times)
    config = np.show_config(mode="dicts") if hasattr(np, "show_config") else {}
    blas = config.get("Build Dependencies", {}).get("blas", {}).get("name", "unknown")
    return {
        "n": n,
        "repeats": repeats,
        "best_seconds": best,
        "gflops": 2 * n**3 / best / 1e9,
        "all_gflops": [2 * n**3 / t / 1e9 for t in times],
        "blas": blas,
        "numpy": np.__version__,
    }


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:3]]
    print(measure(*args))
