"""The one place where an edit's preset, base settings and explicit overrides merge.

Order, later wins: the :class:`~flowstudio.edit.settings.EditSettings` defaults, a full ``settings``
to start from, the preset's values, then the caller's explicit overrides (``None`` = not given).
Nested controls merge field by field: ``flowedit={"n_avg": 2}`` over a preset's FlowEdit keeps the
preset's ``n_max`` and ``n_min``; a control's dataclass (``FlowEditConfig(n_max=5)``) counts as
every field given.

A preset's FlowEdit window (``n_max``, ``n_min``) is a count of *steps* chosen at the preset's step
count; when the steps change it is rescaled to keep its fraction of the grid, unless the caller set
that count. Before this module the CLI merged the sub-configs itself and the API rescaled only when
no ``flowedit`` value came in at all, so ``--preset color --steps 30`` edited over 21 of 30 steps
but adding ``--n-avg 2`` (an unrelated field) edited over only 7 of 30.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from flowstudio.edit.attention_share import AttentionShareConfig
from flowstudio.edit.blending import BlendConfig
from flowstudio.edit.flowedit import FlowEditConfig
from flowstudio.edit.injection import InjectionConfig
from flowstudio.edit.presets import PRESETS, Preset, preset_values, values_of
from flowstudio.edit.reschedule import RescheduleConfig
from flowstudio.edit.settings import EditSettings
from flowstudio.errors import InputError

SETTING_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(EditSettings))
#: Nested controls and their config dataclasses.
CONTROLS: dict[str, type] = {
    "flowedit": FlowEditConfig,
    "injection": InjectionConfig,
    "attention_share": AttentionShareConfig,
    "blend": BlendConfig,
    "reschedule": RescheduleConfig,
}
#: FlowEdit fields counted in steps of the grid (rescaled with ``steps``).
STEP_COUNTS: tuple[str, ...] = ("n_max", "n_min")


def merge_edit_settings(
    *,
    source_prompt: str | None,
    target_prompt: str | None,
    preset: str | Preset | None = None,
    settings: EditSettings | None = None,
    **overrides: Any,
) -> EditSettings:
    """Resolved, validated settings of one edit.

    Args:
        source_prompt, target_prompt: the prompts (``None``: from ``settings``).
        preset: a preset name (:data:`~flowstudio.edit.presets.PRESETS`; an unvalidated one raises)
            or a :class:`~flowstudio.edit.presets.Preset` record.
        settings: full settings to start from.
        **overrides: :class:`EditSettings` fields; ``None`` values are ignored; nested controls as
            their dataclass (every field given) or a mapping of the fields given.

    Raises:
        InputError: an unknown option, an unknown or unvalidated preset, a value out of range.
    """
    unknown = sorted(set(overrides) - set(SETTING_FIELDS))
    if unknown:
        raise InputError(
            f"unknown edit option(s) {', '.join(unknown)}; valid options: {', '.join(sorted(SETTING_FIELDS))}"
        )
    values: dict[str, Any] = {} if settings is None else {n: getattr(settings, n) for n in SETTING_FIELDS}
    from_preset = _preset_values(preset)
    values |= from_preset
    given = {k: v for k, v in overrides.items() if v is not None}
    fields_given: dict[str, set[str]] = {}
    for name, value in given.items():
        if name in CONTROLS:
            changes = _given_fields(name, value)
            fields_given[name] = set(changes)
            values[name] = _replace(CONTROLS[name], values.get(name), changes)
        else:
            values[name] = value
    if "flowedit" in from_preset and "steps" in from_preset:
        values["flowedit"] = _rescale_flowedit(
            values["flowedit"],
            from_preset["flowedit"],
            from_preset["steps"],
            values.get("steps", from_preset["steps"]),
            keep=fields_given.get("flowedit", set()),
        )
    if source_prompt is not None:
        values["source_prompt"] = source_prompt
    if target_prompt is not None:
        values["target_prompt"] = target_prompt
    values.setdefault("source_prompt", None)
    values.setdefault("target_prompt", None)
    return EditSettings(**values)


def _preset_values(preset: str | Preset | None) -> dict[str, Any]:
    if preset is None:
        return {}
    if isinstance(preset, Preset):
        return values_of(preset)
    if not isinstance(preset, str):
        raise InputError(f"preset must be a preset name ({', '.join(PRESETS)}), got {preset!r}")
    return preset_values(preset)


def _given_fields(name: str, value: Any) -> dict[str, Any]:
    """The fields of control ``name`` that ``value`` sets."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if hasattr(value, "given"):  # a partial request control (flowstudio.jobs.requests._Options)
        return value.given()
    if isinstance(value, Mapping):
        return {k: v for k, v in value.items() if v is not None}
    raise InputError(f"{name} must be a {CONTROLS[name].__name__} or a mapping of its fields, got {value!r}")


def _replace(config: type, base: Any, changes: dict[str, Any]) -> Any:
    """``base`` (or the defaults) with ``changes``; lists of blocks become tuples, ``"all"`` None."""
    names = {f.name for f in dataclasses.fields(config)}
    unknown = sorted(set(changes) - names)
    if unknown:
        raise InputError(
            f"unknown {config.__name__} field(s) {', '.join(unknown)}; valid: {', '.join(sorted(names))}"
        )
    changes = {k: tuple(v) if isinstance(v, list) else v for k, v in changes.items()}
    if changes.get("blocks") == "all":
        changes["blocks"] = None  # every block (a None of the request means 'not given')
    if isinstance(base, Mapping):
        base = config(**base)
    return dataclasses.replace(base if base is not None else config(), **changes)


def _rescale_flowedit(
    config: FlowEditConfig, preset: FlowEditConfig, preset_steps: int, steps: int, keep: set[str]
) -> FlowEditConfig:
    """Scale the preset's step counts to ``steps``, keeping those the caller set (``keep``).

    ``--preset color --steps 30`` on a preset chosen at 10 steps editing over the last 7 edits over
    the last 21, with or without ``--n-avg 2``; ``--n-max 5`` is taken as given.
    """
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1 or steps == preset_steps:
        return config  # a bad step count is refused by EditSettings with its own message
    scaled: dict[str, Any] = {}
    if "n_max" not in keep and preset.n_max is not None:
        scaled["n_max"] = max(1, round(preset.n_max * steps / preset_steps))
    if "n_min" not in keep:
        scaled["n_min"] = round(preset.n_min * steps / preset_steps)
    result = dataclasses.replace(config, **scaled)
    if "n_min" not in keep and result.n_max is not None and result.n_min > result.n_max:
        result = dataclasses.replace(result, n_min=result.n_max)  # a scaled tail never outgrows the window
    return result
