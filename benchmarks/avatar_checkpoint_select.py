"""Choose a DualForce checkpoint on validation clips, not on the clips it is reported on.

The toy's samples swing from one checkpoint to the next as far as recipes differ (docs/findings_avatar.md,
"More training"), so the last checkpoint of a run is a draw. This exports each checkpoint of a run
(``flowstudio avatar export``: the EMA when the run keeps one, ``--raw`` the weights), scores it with
``avatar eval`` at one setting on VALIDATION clips (a different world seed from the held-out clips the
guide reports), and applies issue 18 item 1's bars there::

    python benchmarks/avatar_checkpoint_select.py --run RUN_DIR --data VALIDATION --features FEATURES \
        --setting 0.5:3 --truth-r R --codec-fvd F [--from-step 5000] [--every 1000] [--raw] \
        [--export OUT] --tag TAG

Choice rule: a checkpoint that meets all four bars (lip-sync r >= 0.6 x the truth's r on the same
clips, best lag within +-1 frame on >= 5 of 6 (the same share of more clips), identity ratio at 30 s
<= 1.0, fvd_toy <= 1.5 x the codec's own reconstructions) is *chosen* (the highest r among them).
Where none does, nothing is chosen; the *candidate* for a look on the held-out clips is the one
meeting the lip-sync and lag bars with the lowest identity ratio (ties: lower fvd_toy), and the table
says which bars it misses. ``--export`` writes the chosen (else the candidate) checkpoint as a model
folder. Results: ``benchmarks/results/<tag>.{json,md}``, rewritten after every checkpoint.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # sibling scripts

from _results import write_results  # noqa: E402
from avatar_context_noise import _flags, _row, sampling  # noqa: E402


def missed_bars(row: dict, bar_r: float, bar_fvd: float, clips: int) -> list[str]:
    """The bars of issue 18 item 1 that ``row`` (an ``avatar_context_noise`` row) misses."""
    missed = []
    if row["lip_sync_corr"] is None or row["lip_sync_corr"] < bar_r:
        missed.append("lip-sync")
    if row["within_1"] < math.ceil(5 * clips / 6):  # 5 of 6 clips, 20 of 24
        missed.append("lags")
    if row["identity_ratio_30s"] is None or row["identity_ratio_30s"] > 1.0:
        missed.append("identity")
    if row["fvd_toy"] is None or row["fvd_toy"] > bar_fvd:
        missed.append("fvd_toy")
    return missed


def choose(rows: list[dict]) -> tuple[dict | None, dict | None]:
    """``(chosen, candidate)``: chosen meets every bar (highest r); else the candidate meets lip-sync and
    lags with the lowest identity ratio (then fvd_toy); either may be ``None``."""
    passing = [r for r in rows if not r["missed"]]
    if passing:
        best = max(passing, key=lambda r: r["lip_sync_corr"])
        return best, best
    synced = [r for r in rows if not {"lip-sync", "lags"} & set(r["missed"])]
    if not synced:
        return None, None
    return None, min(synced, key=lambda r: (r["identity_ratio_30s"], r["fvd_toy"]))


def main() -> None:
    from flowstudio.avatar.evaluation.evaluate import evaluate_model
    from flowstudio.avatar.training.export import checkpoint_steps, export_checkpoint

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True, type=Path, help="a training run's output_dir")
    parser.add_argument("--data", required=True, type=Path, help="validation clips (not the reported ones)")
    parser.add_argument("--features", type=Path)
    parser.add_argument("--setting", default="0.5:4", help="C:S or C:S:STEPS (as avatar_context_noise)")
    parser.add_argument("--clips", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--from-step", type=int, default=0)
    parser.add_argument("--every", type=int, default=1000)
    parser.add_argument("--raw", action="store_true", help="the trained weights, not the run's EMA")
    parser.add_argument("--truth-r", type=float, required=True, help="the truth's r on the validation clips")
    parser.add_argument("--codec-fvd", type=float, required=True, help="the codec's fvd_toy on them")
    parser.add_argument("--export", type=Path, help="write the chosen (else candidate) checkpoint here")
    parser.add_argument("--tag", default="avatar_checkpoint_select")
    args = parser.parse_args()

    chosen_sampling = sampling(args.setting)
    bar_r, bar_fvd = 0.6 * args.truth_r, 1.5 * args.codec_fvd
    picked = [s for s in checkpoint_steps(args.run) if s >= args.from_step and s % args.every == 0]
    if not picked:
        raise SystemExit(
            f"{args.run}: no checkpoint at a multiple of {args.every} from step {args.from_step}"
        )
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as scratch:
        for step in picked:
            folder = export_checkpoint(args.run, step, Path(scratch) / f"step-{step}", raw=args.raw)
            start = time.perf_counter()
            report = evaluate_model(
                args.data,
                checkpoint=folder,
                clips=args.clips,
                seed=args.seed,
                features=args.features,
                progress=False,
                **chosen_sampling,
            )
            row = {"step": step, **_row(report)}
            row["missed"] = missed_bars(row, bar_r, bar_fvd, args.clips)
            rows.append(row)
            print(
                f"step {step}: r {row['lip_sync_corr']:.3f} lags {row['within_1']}/{args.clips} identity "
                f"{row['identity_ratio_30s']:.2f} fvd_toy {row['fvd_toy']:.1f} "
                f"({time.perf_counter() - start:.0f} s)",
                flush=True,
            )
            _write(args, rows, bar_r, bar_fvd)
        chosen, candidate = choose(rows)
        _write(args, rows, bar_r, bar_fvd, chosen, candidate, done=True)
        if args.export is not None and candidate is not None:
            export_checkpoint(args.run, candidate["step"], args.export, raw=args.raw)
            print(f"exported step {candidate['step']} to {args.export}")
    print(Path(__file__).resolve().parent.joinpath("results", f"{args.tag}.md").read_text())


def _write(
    args: argparse.Namespace,
    rows: list[dict],
    bar_r: float,
    bar_fvd: float,
    chosen: dict | None = None,
    candidate: dict | None = None,
    done: bool = False,
) -> None:
    command = "python benchmarks/avatar_checkpoint_select.py " + " ".join(_flags(vars(args)))
    settings = {
        "run": str(args.run),
        "data": str(args.data),
        "setting": args.setting,
        "weights": "trained (raw)" if args.raw else "EMA where the run keeps one",
        "bars": {"lip_sync_corr": bar_r, "within_1": 5, "identity_ratio_30s": 1.0, "fvd_toy": bar_fvd},
        "command": command,
    }
    if chosen is not None:
        verdict = f"**chosen: step {chosen['step']}** (meets every bar on the validation clips)."
    elif candidate is not None:
        verdict = (
            f"No checkpoint meets every bar: nothing chosen. Candidate for the held-out clips: step "
            f"{candidate['step']} (meets lip-sync and lags; misses {', '.join(candidate['missed'])})."
        )
    elif done:
        verdict = "No checkpoint meets the lip-sync and lag bars: nothing chosen."
    else:
        verdict = "(in progress: rewritten after every checkpoint)"
    lines = [
        f"# {args.tag}",
        "",
        f"`{command}`",
        "",
        f"Setting C:S[:steps] {args.setting}, {args.clips} validation clips, noise seed {args.seed}; "
        f"bars r >= {bar_r:.3f}, lags within +-1 on >= 5, identity <= 1.0, fvd_toy <= {bar_fvd:.2f}.",
        "",
        "| step | lip_sync_corr | within +-1 | identity ratio 30 s | fvd_toy | warp error | misses |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['step']} | {row['lip_sync_corr']:.3f} | {row['within_1']}/{len(row['lags'])} "
            f"| {row['identity_ratio_30s']:.2f} | {row['fvd_toy']:.1f} | {row['warp_error']:.2f} "
            f"| {', '.join(row['missed']) or 'none'} |"
        )
    lines += ["", verdict]
    write_results(args.tag, {"settings": settings, "rows": rows}, lines)


if __name__ == "__main__":
    main()
