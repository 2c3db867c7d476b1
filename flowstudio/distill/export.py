"""Export a DMD student as a diffusers model folder that stock ``WanPipeline`` loads and runs.

The folder is the teacher's (same text encoder, tokenizer, VAE, config keys) with the student's
transformer and the student's sampler as its scheduler: ``FlowMatchEulerDiscreteScheduler`` with
``stochastic_sampling`` and the run's shift / terminal level
(:func:`flowstudio.distill.dmd.student_scheduler`), so ``WanPipeline(num_inference_steps=N,
guidance_scale=1)`` samples exactly as the student was trained. ``distill.json`` records the steps
and guidance the student is meant for; ``flowstudio generate --model STUDENT`` reads it.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch

from flowstudio.distill.dmd import student_scheduler

STUDENT_FILE = "distill.json"


def export_student(
    teacher_dir: Path,
    transformer: torch.nn.Module,
    out: Path,
    steps: int,
    shift: float,
    dtype: torch.dtype = torch.float32,
) -> Path:
    """Write ``out`` (atomically: a temporary folder, then a rename), the weights in ``dtype`` (the
    teacher's stored dtype)."""
    tmp = out.with_name(out.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    shutil.copytree(teacher_dir, tmp, ignore=shutil.ignore_patterns("transformer", "scheduler"))
    saved = type(transformer).from_config(transformer.config)  # a copy in the teacher's stored dtype
    saved.load_state_dict(transformer.state_dict())
    saved.to(dtype).save_pretrained(tmp / "transformer")
    student_scheduler(steps, shift).save_config(tmp / "scheduler")
    # the scheduler config carries the student's step count; diffusers keeps "_" keys without a warning
    # (stock WanPipeline still needs num_inference_steps=steps: it does not read it)
    scheduler_file = tmp / "scheduler" / "scheduler_config.json"
    scheduler_config = json.loads(scheduler_file.read_text())
    scheduler_config["_student_steps"] = steps
    scheduler_file.write_text(json.dumps(scheduler_config, indent=2))
    index = json.loads((tmp / "model_index.json").read_text())
    index["scheduler"] = ["diffusers", "FlowMatchEulerDiscreteScheduler"]
    (tmp / "model_index.json").write_text(json.dumps(index, indent=2))
    (tmp / STUDENT_FILE).write_text(
        json.dumps({"steps": steps, "guidance_scale": 1.0, "shift": shift, "sampler": "dmd"}, indent=2)
    )
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return out


def student_settings(model_dir: Path) -> dict | None:
    """The ``distill.json`` of an exported student (``None`` for other model folders)."""
    path = Path(model_dir) / STUDENT_FILE
    return json.loads(path.read_text()) if path.is_file() else None
