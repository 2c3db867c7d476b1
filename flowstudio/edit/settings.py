"""Typed settings of an edit: one frozen dataclass, with one nested dataclass per control.

Every method reads the same surface (``steps``, ``shift``, ``source_guidance``, ``target_guidance``,
solvers, first-frame mode, controls); fields a method does not use are recorded but ignored
(FlowEdit has no inversion solver, the inversion editors no ``n_avg``). Saved beside every output
as JSON (:meth:`EditSettings.to_dict`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from flowstudio.checks import check_int, check_number
from flowstudio.core.solvers import SOLVERS
from flowstudio.edit.attention_share import AttentionShareConfig
from flowstudio.edit.blending import BlendConfig
from flowstudio.edit.controls import SourceMode
from flowstudio.edit.flowedit import FlowEditConfig
from flowstudio.edit.injection import InjectionConfig
from flowstudio.edit.reschedule import RescheduleConfig
from flowstudio.errors import InputError

METHODS: tuple[str, ...] = ("inversion", "flowedit", "rf-solver", "fireflow")
GRIDS: tuple[str, ...] = ("flow", "student")
FirstFrameMode = Literal["source", "image", "none"]


@dataclass(frozen=True)
class EditSettings:
    """Everything that determines an edit (besides the source video, mask and target image).

    Attributes:
        source_prompt, target_prompt: what the source shows / what the edit should show.
        negative_prompt: CFG negative prompt of both sides.
        method: ``inversion`` (baseline: DPM-Solver++ inversion + UniPC), ``flowedit``,
            ``rf-solver``, ``fireflow``.
        steps, shift: the grid's size and flow shift.
        grid: ``flow`` (``flow_sigmas(steps, shift)``, any model) or ``student`` (a distilled DMD
            student's own levels, :func:`~flowstudio.core.stochastic.student_grid`: the few-step
            editor; set by default when the model folder is a student, see :func:`student_edit_defaults`).
        source_guidance: CFG of the source side (inversion CFG; FlowEdit's source CFG).
        target_guidance: CFG of the target side (generation CFG; FlowEdit's target CFG).
        inversion_solver, generation_solver: override the method's solvers (``None``: its defaults).
        fixed_point_iters: extra fixed-point iterations of Euler inversion.
        first_frame: target TI2V first frame: ``none`` (default: generated; the source is then
            inverted without a pin), ``image`` (the target image given; implied by one),
            ``source`` (the source's frame 0, pinned). ``source`` pins the *unedited* frame 0, and the
            model carries its look into every later frame: on the toy model no colour, product or
            background edit happened with it (``benchmarks/results/edit_toy.md``), so it is only for
            edits that must keep frame 0 exactly.
        flowedit: ``n_max``, ``n_min``, ``n_avg``.
        injection, attention_share, blend: controls (``None`` = off).
        reschedule: edit strength as starting noise level (partial inversion).
        source_features: ``auto`` (cache if it fits ``memory_budget_gb``), ``cache``, ``recompute``.
        memory_budget_gb: budget of the source-feature cache.
        cache_on_cpu: keep cached features and the source trajectory in host memory.
        max_batch_rows: split batched model calls into chunks of this many rows (``None``: one call).
        seed: seeds every random draw (FlowEdit noise, SDEdit noise, auto mask).
        preset: name of the preset these settings came from, if any.
    """

    source_prompt: str
    target_prompt: str
    negative_prompt: str = ""
    method: str = "inversion"
    steps: int = 30
    shift: float = 5.0
    grid: str = "flow"
    source_guidance: float = 1.0
    target_guidance: float = 5.0
    inversion_solver: str | None = None
    generation_solver: str | None = None
    fixed_point_iters: int = 0
    first_frame: FirstFrameMode = "none"
    flowedit: FlowEditConfig = field(default_factory=FlowEditConfig)
    injection: InjectionConfig | None = None
    attention_share: AttentionShareConfig | None = None
    blend: BlendConfig | None = None
    reschedule: RescheduleConfig = field(default_factory=RescheduleConfig)
    source_features: SourceMode = "auto"
    memory_budget_gb: float = 4.0
    cache_on_cpu: bool = True
    max_batch_rows: int | None = None
    seed: int = 0
    preset: str | None = None

    def __post_init__(self) -> None:
        for name in ("source_prompt", "target_prompt"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise InputError(
                    f"{name} is missing: give a non-empty text describing "
                    f"{'the source video' if name == 'source_prompt' else 'the edited video'}, got {value!r}"
                )
        if self.method not in METHODS:
            raise InputError(f"unknown method {self.method!r}; choose one of {', '.join(METHODS)}")
        for name in ("inversion_solver", "generation_solver"):
            value = getattr(self, name)
            if value is not None and value not in SOLVERS:
                raise InputError(f"unknown {name} {value!r}; choose one of {', '.join(sorted(SOLVERS))}")
            if value == "dmd":
                raise InputError(
                    f"{name} 'dmd' (a distilled student's stochastic sampler) cannot edit: inversion and "
                    "regeneration need a deterministic solver; use euler, unipc, dpm++2m, rf-solver, fireflow"
                )
        if self.grid not in GRIDS:
            raise InputError(f"grid must be one of {', '.join(GRIDS)}, got {self.grid!r}")
        check_int("steps", self.steps, minimum=1)
        check_number("shift", self.shift, positive=True, what="; the flow shift of the schedule, 5 is usual")
        for name in ("source_guidance", "target_guidance"):
            check_number(name, getattr(self, name), what="; 1 disables guidance")
        check_int("seed", self.seed)
        check_int("fixed_point_iters", self.fixed_point_iters, minimum=0)
        if self.max_batch_rows is not None:
            check_int("max_batch_rows", self.max_batch_rows, minimum=1)
        if self.first_frame not in ("source", "image", "none"):
            raise InputError(f"first_frame must be 'source', 'image' or 'none', got {self.first_frame!r}")
        if self.source_features not in ("auto", "cache", "recompute"):
            raise InputError(
                f"source_features must be 'auto', 'cache' or 'recompute', got {self.source_features!r}"
            )
        check_number("memory_budget_gb", self.memory_budget_gb, minimum=0.0)

    def replace(self, **changes: Any) -> EditSettings:
        """A copy with ``changes`` applied (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EditSettings:
        """Settings from :meth:`to_dict` output (the ``settings`` of an edit JSON), to rerun an edit."""
        nested = {
            "flowedit": FlowEditConfig,
            "injection": InjectionConfig,
            "attention_share": AttentionShareConfig,
            "blend": BlendConfig,
            "reschedule": RescheduleConfig,
        }
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise InputError(f"unknown settings {', '.join(unknown)}; is this an edit settings JSON?")
        values = dict(data)
        for key, config in nested.items():
            value = values.get(key)
            if isinstance(value, dict):
                if isinstance(value.get("blocks"), list):
                    value = value | {"blocks": tuple(value["blocks"])}
                values[key] = config(**value)
        return cls(**values)


def student_edit_defaults(settings: EditSettings, student: dict[str, Any], given: set[str]) -> EditSettings:
    """The few-step editor: a distilled student (its ``distill.json``) edits with FlowEdit on its own
    levels at its own steps and shift, without guidance (it was distilled with the teacher's CFG
    inside), unless those fields were given explicitly (``given``). A preset's values for them
    (tuned for the teacher) give way; its controls (a composite, a blend) stay."""
    values: dict[str, Any] = {
        "method": "flowedit",
        "grid": "student",
        "steps": student.get("steps", settings.steps),
        "shift": student.get("shift", settings.shift),
        "source_guidance": student.get("guidance_scale", 1.0),
        "target_guidance": student.get("guidance_scale", 1.0),
    }
    changes = {k: v for k, v in values.items() if k not in given}
    if "flowedit" not in given and "steps" in changes:
        changes["flowedit"] = FlowEditConfig(n_min=0, n_avg=settings.flowedit.n_avg)  # every level edits
    return settings.replace(**changes) if changes else settings
