"""Inversion round trip (issue 5): reconstruction PSNR with target prompt = source prompt, for each
solver at 8/16/30/50 steps.

The measurement is the solver round-trip benchmark of the foundation; this name runs it. Results:
``benchmarks/results/solver_roundtrip.{json,md,png}``.

    python benchmarks/inversion_roundtrip.py [--model PATH]
"""

from solver_roundtrip import main

if __name__ == "__main__":
    main()
