"""Choose among DMD students (and weighted averages of them) on a selection set, before the report.

``dmd_toy.py`` is the report: it reads students on ``toy_quality.py``'s held-out prompts and says
whether the bar is met. Choosing a student (or an averaging weight) by that report would fit the
choice to its prompts, so the choice is made here, on the distill monitor's evaluation stream
(``flowstudio.distill.monitor.eval_specs``: other prompts, other seeds), and the report is run once
on the chosen student.

Why a separate, larger set than the monitor's 48 prompts: the students differ most on one backdrop
(plain, 1 prompt in 6), which 48 or 96 prompts sample too thinly to rank them (the 96-prompt probe
of 2026-12-02 held 11% plain backdrops and overstated background accuracy by 7-8 points against the
report). This script prints accuracy per attribute and per backdrop, with the teacher on the same
prompts, and the rule: a candidate is eligible when every attribute is within ``--margin`` points of
the teacher on this set; among eligible ones the largest worst-attribute margin wins (a tie: the larger
second-worst margin, then the third); none eligible
is reported as none (no least-bad pick).

    python benchmarks/dmd_select.py --prompts 300 --teacher flowstudio/assets/toy-shapes \\
        --student gs=/path/gs --student ganE=/path/ganE --average gs,ganE:0.5,0.5 --tag dmd_select_soup

Candidates are read one at a time in this process; ``--only NAME`` reads one candidate (or
``teacher``) and writes ``<tag>.<name>.json`` so that two processes can share the work, and
``--combine`` then writes the table from those files. A larger ``--prompts`` later extends those
reads (a prompt's clip depends only on its index) instead of starting again.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

from _results import RESULTS, machine_info, write_results
from toy_quality import READERS
from toy_quality import _proportion as proportion

from flowstudio.distill.average import average_students
from flowstudio.distill.export import student_settings
from flowstudio.distill.monitor import ATTRIBUTES, eval_specs
from flowstudio.jobs.generation import _STUDENT_FIELDS as STUDENT_FIELDS
from flowstudio.pipeline import GenerationSettings
from flowstudio.worlds.readers import read_or_no_object


def generation_settings(folder: Path) -> dict:
    """The sampling a model folder runs with by default: a student's own (its ``distill.json``, mapped as
    ``flowstudio generate`` maps it), else the pipeline's defaults (the teacher's: 30 UniPC steps, CFG 5)."""
    own = student_settings(folder) or {}
    defaults = {f.name: f.default for f in dataclasses.fields(GenerationSettings)}
    return {field: own.get(key, defaults[field]) for field, key in STUDENT_FIELDS.items()}


def reads_right(frames, spec, name: str) -> bool:
    """Whether reader ``name`` reads the prompt's value (a clip with no object reads wrong)."""
    return read_or_no_object(READERS[name], frames) == getattr(spec, name)


def read_candidate(folder: Path, settings: dict, prompts: int, earlier: dict | None = None) -> dict:
    """Each prompt's reads (per attribute: right or wrong) and its backdrop, for one model setting.
    ``earlier``: a read of the first prompts by the same setting (each prompt's clip depends only on its
    index), extended here to ``prompts``."""
    from flowstudio.pipeline import WanVideoPipeline

    rows = list(earlier["rows"]) if earlier else []
    seconds = earlier["seconds"] if earlier else 0.0
    if earlier and earlier["settings"] != settings:
        raise SystemExit(f"{folder}: the earlier reads used {earlier['settings']}, not {settings}")
    pipe = WanVideoPipeline.from_pretrained(folder, device="cpu")
    start = time.perf_counter()
    for i, (spec, text) in enumerate(eval_specs(prompts)):
        if i < len(rows):
            continue
        frames = pipe.generate(
            GenerationSettings(prompt=text, num_frames=17, height=128, width=128, seed=i, **settings),
            progress=False,
        ).frames
        rows.append(
            {"backdrop": spec.background, **{name: reads_right(frames, spec, name) for name in ATTRIBUTES}}
        )
    seconds += time.perf_counter() - start
    return {"model": str(folder), "settings": settings, "rows": rows[:prompts], "seconds": seconds}


def summarise(read: dict) -> dict:
    rows = read["rows"]
    out = {name: proportion(sum(r[name] for r in rows), len(rows)) for name in ATTRIBUTES}
    backdrops = sorted({r["backdrop"] for r in rows})
    out["background_by_backdrop"] = {
        b: [sum(r["background"] for r in rows if r["backdrop"] == b), sum(r["backdrop"] == b for r in rows)]
        for b in backdrops
    }
    return out


def choose(summaries: dict[str, dict], margin: float) -> tuple[str | None, dict[str, float]]:
    """The eligible candidate with the largest worst-attribute margin over (teacher - margin).

    Ties on the worst margin (reads are counts, so two candidates can share it exactly) go to the
    larger second-worst margin, then the third (leximin: the rule's own criterion, one attribute
    further); names break a complete tie, so the choice never depends on the candidates' order.
    """
    teacher = summaries["teacher"]
    margins = {
        name: sorted(round(s[a]["value"] - (teacher[a]["value"] - margin), 9) for a in ATTRIBUTES)
        for name, s in summaries.items()
        if name != "teacher"
    }
    slack = {name: m[0] for name, m in margins.items()}
    eligible = sorted(n for n, v in slack.items() if v >= 0)
    return (max(eligible, key=lambda n: margins[n]) if eligible else None), slack


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--teacher", type=Path, default=Path("flowstudio/assets/toy-shapes"))
    parser.add_argument("--student", action="append", default=[], help="NAME=FOLDER")
    parser.add_argument(
        "--average", action="append", default=[], help="A,B:WA,WB  (a weighted average of two named students)"
    )
    parser.add_argument("--prompts", type=int, default=300)
    parser.add_argument("--margin", type=float, default=0.05)
    parser.add_argument("--work", type=Path, default=Path("outputs/dmd_select"))
    parser.add_argument("--only", default=None, help="read one candidate (or 'teacher') and stop")
    parser.add_argument("--combine", action="store_true", help="write the table from the --only files")
    parser.add_argument("--tag", default="dmd_select")
    args = parser.parse_args()

    if any("=" not in s for s in args.student):
        parser.error("give each --student as NAME=FOLDER (a folder exported by `flowstudio distill`)")
    students = dict(s.split("=", 1) for s in args.student)
    averages = {}  # label -> ([folders], [weights])
    for spec in args.average:
        names, _, weights = spec.partition(":")
        parts, shares = names.split(","), weights.split(",")
        if len(parts) != len(shares) or any(p not in students for p in parts):
            parser.error(f"--average {spec!r}: give A,B:WA,WB over names given by --student")
        averages["+".join(f"{p}x{w}" for p, w in zip(parts, shares, strict=True))] = (
            [Path(students[p]) for p in parts],
            [float(w) for w in shares],
        )
    candidates = {"teacher": args.teacher, **{n: Path(f) for n, f in students.items()}}
    candidates.update({label: args.work / label for label in averages})
    if args.only and args.only not in candidates:
        parser.error(f"--only {args.only!r}: not a candidate ({', '.join(candidates)})")

    args.work.mkdir(parents=True, exist_ok=True)
    part = lambda name: args.work / f"{args.tag}.{name}.json"  # noqa: E731
    for name, folder in candidates.items():
        earlier = json.loads(part(name).read_text()) if part(name).exists() else None
        if earlier and earlier["model"] != str(folder):
            raise SystemExit(f"{part(name)} holds reads of {earlier['model']}, not {folder}: another --tag")
        if (
            args.combine
            or (args.only and name != args.only)
            or (earlier and len(earlier["rows"]) >= args.prompts)
        ):
            continue
        if name in averages and not folder.exists():  # built here in seconds
            sources, weights = averages[name]
            average_students(sources, folder, weights)
        read = read_candidate(folder, generation_settings(folder), args.prompts, earlier)
        part(name).write_text(json.dumps(read))
        print(
            name, {a: summarise(read)[a]["value"] for a in ATTRIBUTES}, f"{read['seconds']:.0f} s", flush=True
        )
    if args.only:
        return

    reads = {name: json.loads(part(name).read_text()) for name in candidates if part(name).exists()}
    for read in reads.values():
        read["rows"] = read["rows"][: args.prompts]
    # a candidate read on fewer prompts is left out of the table (named under it), never mixed in
    short = [name for name, read in reads.items() if len(read["rows"]) < args.prompts]
    if "teacher" in short or "teacher" not in reads:
        raise SystemExit(f"the teacher has not been read on {args.prompts} prompts: run --only teacher first")
    reads = {name: read for name, read in reads.items() if name not in short}
    summaries = {name: summarise(read) for name, read in reads.items()}
    chosen, slack = choose(summaries, args.margin)
    result = {
        "prompts": args.prompts,
        "stream": "flowstudio.distill.monitor.eval_specs (not the report's held-out stream)",
        "margin": args.margin,
        "candidates": {
            n: {
                "model": reads[n]["model"],
                "settings": reads[n]["settings"],
                "seconds": reads[n]["seconds"],
                **s,
            }
            for n, s in summaries.items()
        },
        "slack": slack,
        "chosen": chosen,
        "left_out": short,
        "machine": machine_info(),
    }
    backdrops = sorted(summaries["teacher"]["background_by_backdrop"])
    lines = [
        f"# {args.tag}",
        "",
        f"`python benchmarks/dmd_select.py --prompts {args.prompts} ...` (candidates in the json). "
        f"{args.prompts} prompts of the distill monitor's evaluation stream, not the report's held-out "
        "prompts. "
        f"Eligible: every attribute within {100 * args.margin:g} points of the teacher on these prompts; "
        "chosen: the eligible candidate with the largest worst-attribute margin (a tie: the larger "
        "second-worst margin, then the third).",
        "",
        "| candidate | colour | shape | background | worst margin | "
        + " | ".join(f"bg {b}" for b in backdrops)
        + " |",
        "|---" * (5 + len(backdrops)) + "|",
    ]
    for name, s in summaries.items():
        by = s["background_by_backdrop"]
        lines.append(
            f"| {name} | "
            + " | ".join(f"{100 * s[a]['value']:.1f}" for a in ATTRIBUTES)
            + f" | {'' if name == 'teacher' else f'{100 * slack[name]:+.1f}'} | "
            + " | ".join("{}/{}".format(*by.get(b, [0, 0])) for b in backdrops)
            + " |"
        )
    lines += ["", f"Chosen: **{chosen or 'none (no candidate within the margin on every attribute)'}**."]
    if short:
        lines += ["", f"Read on fewer than {args.prompts} prompts, left out: {', '.join(short)}."]
    print("\n".join(lines))
    write_results(args.tag, result, lines, RESULTS)


if __name__ == "__main__":
    main()
