"""A real grid that needs nothing but memento: estimate pi by Monte Carlo, several ways.

    python examples/quickstart.py            # runs the grid, stores results in ./memento.sqlite
    python examples/quickstart.py            # again: everything comes from the store

Try ``--dry-run`` to see the plan, or ``--cache-path /tmp/pi.sqlite`` to store elsewhere.
"""

from __future__ import annotations

import argparse
import math
import random

from memento import Memento


def estimate_pi(context, config):
    """Throw darts at the unit square; checkpoint every chunk so an interruption resumes."""
    rng = random.Random(config.seed)
    state = context.restore() if context.checkpoint_exist() else {"done": 0, "inside": 0}
    chunk = config.settings["chunk"]
    while state["done"] < config.samples:
        n = min(chunk, config.samples - state["done"])
        if config.method == "circle":  # P(inside the quarter circle) = pi / 4
            hits = sum(rng.random() ** 2 + rng.random() ** 2 <= 1.0 for _ in range(n))
        else:  # "sine": P(u <= sin(pi v / 2)) = 2 / pi
            hits = sum(rng.random() <= math.sin(rng.random() * math.pi / 2) for _ in range(n))
        state["done"] += n
        state["inside"] += hits
        fraction = state["inside"] / state["done"]
        estimate = 4.0 * fraction if config.method == "circle" else 2.0 / fraction
        context.record({"error": (state["done"], abs(estimate - math.pi))})
        context.progress(n, total=config.samples)
        context.checkpoint(state)
    return {"estimate": estimate, "error": abs(estimate - math.pi)}


MATRIX = {
    "parameters": {
        "method": ["circle", "sine"],
        "samples": [20_000, 200_000],
        "seed": [0, 1, 2],
    },
    "settings": {"chunk": 10_000},
    "exclude": [{"method": "sine", "seed": 2}],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true")
    parser.add_argument("--cache-path", default=None)
    args = parser.parse_args()
    results = Memento(estimate_pi).run(MATRIX, dry_run=args.dry_run, cache_path=args.cache_path)
    if results is None:
        return
    for r in results:
        source = "cached" if r.was_cached else f"ran in {r.runtime.total_seconds():.2f} s"
        print(f"{r.config}: pi ~ {r.inner['estimate']:.5f} ({source})")
    best = min(results, key=lambda r: r.inner["error"])
    print(f"best: {best.config} with error {best.inner['error']:.2e}")


if __name__ == "__main__":
    main()
