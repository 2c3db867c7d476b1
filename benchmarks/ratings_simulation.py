"""Simulated human raters of known preference strength (issue 16, item 5): does the Bradley-Terry fit of
2,000 pairwise votes over 8 methods recover the true order (Kendall tau >= 0.9), and do its Bayesian
bootstrap 95% intervals cover the truth (>= 90%)? 100 simulations, 1,000 bootstrap rounds each
(:func:`flowstudio.bench.ratings.simulation_study`; the same check as the slow test in
tests/test_ratings.py).

Writes ``benchmarks/results/ratings_simulation.json``.

    OMP_NUM_THREADS=1 taskset -c 1 python benchmarks/ratings_simulation.py [--sims 100] [--rounds 1000]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from flowstudio.bench.ratings import GUARD, PRIOR, SIM_THETA, simulated_raters, simulation_study

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sims", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    start = time.perf_counter()
    figures = simulation_study(args.sims, args.rounds, seed=args.seed)
    result = {
        "benchmark": "ratings_simulation",
        "command": "OMP_NUM_THREADS=1 taskset -c 1 python benchmarks/ratings_simulation.py "
        f"--sims {args.sims} --rounds {args.rounds} --seed {args.seed}",
        "true_theta": [round(float(t), 4) for t in SIM_THETA],
        "raters": [{"strength": r.strength, "tie_or_both_bad": r.no_pick} for r in simulated_raters()],
        "prior_virtual_games_per_pair": PRIOR,
        "guard_virtual_ties_per_pair": GUARD,
        "intervals": "Bayesian bootstrap (Dirichlet weights over the votes and the prior's half-wins)",
        "truth_for_coverage": "population BT scores of the simulated raters (ratings.population_theta)",
        **figures,
        "goal_kendall_tau": 0.9,
        "goal_coverage": 0.9,
        "goals_met": figures["kendall_tau_mean"] >= 0.9 and figures["interval_coverage"] >= 0.9,
        "seconds": round(time.perf_counter() - start, 1),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "ratings_simulation.json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(figures, indent=1), f"{result['seconds']} s")


if __name__ == "__main__":
    main()
