"""Typed job requests: what ``flowstudio generate``, ``flowstudio edit`` and ``avatar generate`` accept.

One pydantic model per job. The same model is the CLI's options (the commands build one and call
:func:`flowstudio.jobs.run`), the REST schema (``EditRequest.model_json_schema()``) and the
``request`` part of every JSON record (``EditRequest.model_validate(record["request"])`` reruns it).
Unknown fields are refused (a typo is an error, not a silently ignored option) and every value is
checked when the request is built, before any model loads.

Edit requests hold *overrides*: a field left ``None`` comes from the preset, else the default
(:func:`flowstudio.jobs.merge.merge_edit_settings` is the one place where they merge). Nested
controls (``flowedit``, ``injection``...) are partial the same way: ``flowedit={"n_avg": 2}``
changes ``n_avg`` only.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from flowstudio.core.solvers import SOLVERS
from flowstudio.edit.settings import METHODS
from flowstudio.errors import InputError
from flowstudio.jobs.fields import Array, Device, DtypeName, FilePath, choice, number, text, whole
from flowstudio.pipeline import TIMESTEP_MODES

Offload = Literal["none", "model", "group"]
_GUIDANCE = "; 1 disables guidance, 5 is usual"
_SHIFT = "; the flow shift of the schedule, 5 is usual"


class _Strict(BaseModel):
    """Unknown fields refused; nothing changes after validation (a request is a record)."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)


class _Options(_Strict):
    """A partial control: fields left ``None`` come from the preset or the control's defaults.

    A control's dataclass (``FlowEditConfig(n_max=5)``) is accepted and counts as every field given.
    """

    @classmethod
    def _from_config(cls, value: Any) -> Any:
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return dataclasses.asdict(value)
        return value

    def given(self) -> dict[str, Any]:
        """The fields the caller set (``None`` means 'not given')."""
        return {k: v for k, v in self.model_dump(exclude_none=True).items() if k in self.model_fields_set}


class FlowEditOptions(_Options):
    n_max: whole(0, "; steps the edit runs over") | None = None
    n_min: whole(0, "; final steps of regular sampling") | None = None
    n_avg: whole(1, "; noise draws per step") | None = None


class InjectionOptions(_Options):
    strength: number(minimum=0.0, maximum=1.0, what="; 0 (off) .. 1") | None = None
    blocks: tuple[int, ...] | Literal["all"] | None = None  # "all" overrides a preset's list
    start: number(minimum=0.0, maximum=1.0) | None = None
    end: number(minimum=0.0, maximum=1.0) | None = None


class AttentionShareOptions(_Options):
    mode: Literal["replace", "concat"] | None = None
    blocks: tuple[int, ...] | Literal["all"] | None = None  # "all" overrides a preset's list
    start: number(minimum=0.0, maximum=1.0) | None = None
    end: number(minimum=0.0, maximum=1.0) | None = None


class BlendOptions(_Options):
    strength: number(minimum=0.0, maximum=1.0, what="; 0 (off) .. 1") | None = None
    start: number(minimum=0.0, maximum=1.0) | None = None
    end: number(minimum=0.0, maximum=1.0) | None = None
    feather: whole(0, "; latent cells") | None = None
    auto_threshold: number(minimum=0.0, maximum=1.0) | None = None
    pixel_composite: bool | None = None
    composite_mask: Literal["blend", "change", "subject", "swap"] | None = None
    change_threshold: number(minimum=0.0, maximum=1.0, what="; colour difference 0..1") | None = None
    change_blur: whole(1, "; pixels") | None = None
    change_grow: whole(0, "; pixels") | None = None
    change_largest: bool | None = None
    change_refine: Literal["none", "source", "both"] | None = None
    change_refine_band: whole(1, "; pixels") | None = None
    change_refine_sure_core: bool | None = None
    change_refine_border: whole(0, "; pixels") | None = None
    subject_inset: whole(1, "; pixels of the frame's border taken as background") | None = None
    subject_grow: whole(0, "; pixels") | None = None
    subject_confirm_grow: whole(0, "; pixels; 0: off") | None = None
    swap_plate_grow: whole(0, "; pixels") | None = None
    swap_erode: whole(0, "; pixels") | None = None
    swap_cut: Literal["change", "subject", "change-or-subject"] | None = None
    swap_backdrop_tolerance: (
        number(minimum=0.0, maximum=0.99, what="; colour distance 0..1, 0: off") | None
    ) = None
    swap_plate_check: number(minimum=0.0, what="; area ratio >= 1 to the colour cut, 0: off") | None = None


class RescheduleOptions(_Options):
    strength: number(minimum=0.0, maximum=1.0, what="; the starting noise level 0..1") | None = None
    mode: Literal["invert", "noise"] | None = None


for _options in (FlowEditOptions, InjectionOptions, AttentionShareOptions, BlendOptions, RescheduleOptions):
    _options.model_config["json_schema_extra"] = {"description": "fields left out come from the preset"}


class GenerateRequest(_Strict):
    """Text-to-video, or text+image-to-video with ``image``. Field names as in ``GenerationSettings``."""

    kind: Literal["generate"] = "generate"
    prompt: text("what the video shows")
    negative_prompt: str = ""
    num_frames: whole(1, "; 4k+1 frames (5, 9, 17...)") = 17
    height: whole(1, "; a multiple of 32") = 128
    width: whole(1, "; a multiple of 32") = 128
    steps: whole(1, "; denoising steps") = 30
    guidance_scale: number(what=_GUIDANCE) = 5.0
    shift: number(positive=True, what=_SHIFT) = 5.0
    solver: choice(SOLVERS) = "unipc"
    timesteps: choice(TIMESTEP_MODES) = "auto"
    seed: whole() = 0
    image: FilePath | None = None
    fps: number(positive=True, what="; the frame rate of the mp4, e.g. 16") = 16.0
    out: FilePath | None = None
    model: FilePath | None = None
    device: Device = "cpu"
    dtype: DtypeName = None
    vae_dtype: DtypeName = None  # the VAE's own (None: float32, as Wan recommends)
    offload: Offload = "none"


class EditRequest(_Strict):
    """Edit ``source`` from ``source_prompt`` to ``target_prompt``; ``None`` fields: preset, else default."""

    kind: Literal["edit"] = "edit"
    source: FilePath | Array
    source_prompt: text("what the source video shows")
    target_prompt: text("what the edited video should show")
    preset: str | None = None
    method: choice(METHODS) | None = None
    steps: whole(1, "; steps of the flow grid") | None = None
    shift: number(positive=True, what=_SHIFT) | None = None
    source_guidance: number(what=_GUIDANCE) | None = None
    target_guidance: number(what=_GUIDANCE) | None = None
    negative_prompt: str | None = None
    inversion_solver: choice(SOLVERS) | None = None
    generation_solver: choice(SOLVERS) | None = None
    fixed_point_iters: whole(0) | None = None
    first_frame: Literal["source", "image", "none"] | None = None
    flowedit: FlowEditOptions | None = None
    injection: InjectionOptions | None = None
    attention_share: AttentionShareOptions | None = None
    blend: BlendOptions | None = None
    reschedule: RescheduleOptions | None = None
    source_features: Literal["auto", "cache", "recompute"] | None = None
    memory_budget_gb: number(minimum=0.0, what="; feature-cache budget in GB") | None = None
    cache_on_cpu: bool | None = None
    max_batch_rows: whole(1) | None = None
    seed: whole() | None = None
    mask: Literal["auto"] | FilePath | Array | None = None
    box: tuple[int, int, int, int] | None = None
    target_image: FilePath | None = None
    fps: number(positive=True, what="; the output frame rate (None: the source's)") | None = None
    frame_policy: Literal["trim", "pad", "resample"] = "trim"
    size_policy: Literal["resize", "crop", "pad"] = "resize"
    size: Literal["model", "native"] | tuple[int, int] = "model"
    out: FilePath | None = None
    model: FilePath | None = None
    device: Device = "cpu"
    dtype: DtypeName = None
    vae_dtype: DtypeName = None  # the VAE's own (None: float32, as Wan recommends)
    offload: Offload = "none"

    @field_validator("flowedit", "injection", "attention_share", "blend", "reschedule", mode="before")
    @classmethod
    def _config_dataclass(cls, value: Any) -> Any:
        return _Options._from_config(value)

    @field_validator("size")
    @classmethod
    def _positive_size(cls, value: Any) -> Any:
        if isinstance(value, tuple) and min(value) < 1:
            raise InputError(f"size must be 'model', 'native' or (height, width) in pixels, got {value!r}")
        return value

    def overrides(self) -> dict[str, Any]:
        """The :class:`~flowstudio.edit.settings.EditSettings` fields this request sets, nested ones as
        dicts of the fields given (what :func:`flowstudio.jobs.merge.merge_edit_settings` takes)."""
        from flowstudio.jobs.merge import SETTING_FIELDS

        values: dict[str, Any] = {}
        for name in SETTING_FIELDS:
            value = getattr(self, name, None)
            if value is None or name in ("source_prompt", "target_prompt", "preset"):
                continue
            values[name] = value.given() if isinstance(value, _Options) else value
        return values


class AvatarRequest(_Strict):
    """A talking head from one reference image and a speech audio file."""

    kind: Literal["avatar"] = "avatar"
    image: FilePath
    audio: FilePath
    out: FilePath | None = None
    checkpoint: FilePath | None = None
    steps: whole(1, "; denoising steps per chunk, or None for the config's") | None = None
    seed: whole() = 0
    device: Device = "cpu"
    # classifier-free guidance on the audio against silence (flowstudio.avatar.inference.streaming)
    # None: the model config's forcing.audio_guidance (1 = off unless the checkpoint says otherwise)
    audio_guidance: number(minimum=0.0, what="; 1 disables audio guidance (2x compute above)") | None = None
    # the noise level generated chunks are committed at; None: the model config's forcing.context_sigma
    context_sigma: number(minimum=0.0, maximum=0.99, what="; 0 is the clean commit") | None = None


#: Any request, told apart by ``kind`` (what a REST endpoint or a JSON record holds).
JobRequest = Annotated[GenerateRequest | EditRequest | AvatarRequest, Field(discriminator="kind")]


def parse_request(data: dict[str, Any]) -> GenerateRequest | EditRequest | AvatarRequest:
    """A request from its JSON form (e.g. a record's ``request``), by its ``kind``."""
    from pydantic import TypeAdapter

    return TypeAdapter(JobRequest).validate_python(data)
