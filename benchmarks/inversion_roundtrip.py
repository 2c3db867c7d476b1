"""Inversion round trip (issue 5): reconstruction PSNR with target prompt = source prompt, for each
solver at 8/16/30/50 steps, on held-out ShapeWorld clips with the trained toy model.

The measurement is the solver round-trip benchmark of the foundation (``solver_roundtrip.py``, which
uses a synthetic clip on the tiny random checkpoint); this script runs it on the toy model and
writes ``benchmarks/results/inversion_roundtrip.{json,md,png}``.

    python benchmarks/inversion_roundtrip.py --model flowstudio/assets/toy-shapes --clips 4
"""

from solver_roundtrip import main

if __name__ == "__main__":
    main("inversion_roundtrip", __doc__)
