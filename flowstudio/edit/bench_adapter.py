"""The editing engine as benchmark methods: ``flowstudio bench run --method flowstudio-edit:<name>``.

``<name>`` is an edit method (``inversion``, ``flowedit``, ``rf-solver``, ``fireflow``) or
``preset`` (the preset matching each case's edit type; only validated presets run, see
:mod:`flowstudio.edit.presets`: a case whose type has none raises :class:`InputError`). The model
comes from ``$FLOWSTUDIO_MODEL`` (a local checkpoint folder), loaded once per run.

``bench run --option key=value --device DEV --dtype DT`` configures the engine:
:func:`parse_options` turns each ``key=value`` into a typed :class:`~flowstudio.edit.settings.EditSettings`
field (``steps=10``, ``target_guidance=7.5``, ``flowedit.n_avg=2``, ``injection.end=0.4``...),
checked before anything loads, and :meth:`EngineMethod.configure` returns the configured method,
which records the options, device, dtype and the resolved settings in the run's results JSON.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np

from flowstudio.errors import InputError

MODEL_ENV = "FLOWSTUDIO_MODEL"
# benchmark edit types -> editing presets
PRESET_FOR_EDIT_TYPE = {
    "product": "product-replace",
    "color": "color",
    "material": "material",
    "background": "background",
    "style": "style",
}
# EditSettings fields the benchmark sets itself (per case, from the method name or --seed)
BENCH_OWNED = ("source_prompt", "target_prompt", "method", "seed", "preset")
_TRUE, _FALSE = {"true", "yes", "on", "1"}, {"false", "no", "off", "0"}


def edit_region(case: Any) -> np.ndarray | None:
    """The region the engine may change in ``case``: its object mask read through ``preserve``.

    A case's ``mask`` is the source's *object*; what the edit must keep is ``case.preserve``. The
    engine's mask is the region to *edit* (blending keeps everything outside it), so: the object for
    ``outside_mask`` (product, colour, material), everything but the object for ``inside_mask``
    (background: the product is kept), and no mask for ``none`` (style: the whole frame changes).
    Passing the object mask for a background edit would keep the very background the prompt changes.
    """
    from types import SimpleNamespace

    from flowstudio.bench.scoring import regions

    mask = case.load_mask() if hasattr(case, "load_mask") else None
    preserve = getattr(case, "preserve", "outside_mask")
    if mask is None or preserve == "none":
        return None
    # the scorer's own edit region, from the source's object alone (a method never sees the target's)
    return regions(SimpleNamespace(preserve=preserve), mask, None, mask.shape)[0]


def option_types() -> dict[str, Any]:
    """``--option`` keys and their types: every settable EditSettings field, nested ones dotted.

    An optional control (``injection``, ``attention_share``, ``blend``) takes ``none`` or
    ``default`` as a whole (``blend=default`` turns it on with its defaults), or dotted fields
    (``injection.end=0.4`` turns it on with that field changed).
    """
    from flowstudio.edit.settings import EditSettings

    keys: dict[str, Any] = {}
    for name, hint in typing.get_type_hints(EditSettings).items():
        if name in BENCH_OWNED:
            continue
        keys[name] = hint
        config = _dataclass_in(hint)
        if config is not None:
            for sub, sub_hint in typing.get_type_hints(config).items():
                keys[f"{name}.{sub}"] = sub_hint
    return keys


def _dataclass_in(hint: Any) -> type | None:
    """The dataclass in ``Config`` or ``Config | None``, else ``None``."""
    for arg in (hint, *typing.get_args(hint)):
        if isinstance(arg, type) and dataclasses.is_dataclass(arg):
            return arg
    return None


def _parse_value(key: str, text: str, hint: Any) -> Any:
    """``text`` as a value of type ``hint``; :class:`InputError` naming the key and the expected type."""
    args = typing.get_args(hint)
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType) and type(None) in args:
        if text.strip().lower() in ("none", "null", ""):
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _parse_value(key, text, inner)
    if origin is Literal:
        if text not in args:
            raise InputError(f"--option {key}={text}: choose one of {', '.join(map(str, args))}")
        return text
    if origin is tuple:  # tuple[int, ...]: comma-separated
        try:
            return tuple(int(v) for v in text.split(",") if v.strip())
        except ValueError:
            raise InputError(
                f"--option {key}={text}: expected comma-separated integers, e.g. 0,1,2"
            ) from None
    if hint is bool:
        if text.lower() not in _TRUE | _FALSE:
            raise InputError(f"--option {key}={text}: expected true or false")
        return text.lower() in _TRUE
    if hint in (int, float):
        try:
            return hint(text)
        except ValueError:
            raise InputError(
                f"--option {key}={text}: expected {'an integer' if hint is int else 'a number'}"
            ) from None
    if hint is str:
        return text
    raise InputError(f"--option {key}: this setting cannot be given as text")  # pragma: no cover


def parse_options(pairs: Iterable[str], method: str = "inversion") -> dict[str, Any]:
    """``["steps=10", "flowedit.n_avg=2"]`` -> typed :func:`flowstudio.edit.edit` keyword options.

    Each key must be one of :func:`option_types` (unknown keys, repeated keys and missing ``=``
    are refused with one line naming the key and the allowed keys); values are parsed by the
    field's type, nested configs are built from their dotted fields, and the whole is validated as
    :class:`EditSettings` for ``method`` so that a bad value fails here, before any model loads.

    Raises:
        InputError: the first problem, in one line.
    """
    from flowstudio.edit.settings import EditSettings

    allowed = option_types()
    defaults = {f.name: f for f in dataclasses.fields(EditSettings)}
    flat: dict[str, Any] = {}
    nested: dict[str, dict[str, Any]] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise InputError(f"--option {pair!r}: expected key=value, e.g. steps=10")
        if key not in allowed:
            hint = " (set by the benchmark)" if key in BENCH_OWNED else ""
            raise InputError(
                f"--option {key}: unknown engine option{hint}; allowed: {', '.join(sorted(allowed))}"
            )
        if key in flat or key.partition(".")[2] in nested.get(key.partition(".")[0], {}):
            raise InputError(f"--option {key} is given twice; give it once")
        head, dot, sub = key.partition(".")
        config = _dataclass_in(allowed[head])
        if dot:
            if head in flat:
                raise InputError(f"--option {key}: {head} is also given as a whole; give one or the other")
            nested.setdefault(head, {})[sub] = _parse_value(key, text.strip(), allowed[key])
        elif config is not None:
            if head in nested:
                raise InputError(f"--option {key}: {head}.* fields are also given; give one or the other")
            word = text.strip().lower()
            if word in ("none", "null", "off") and type(None) in typing.get_args(allowed[key]):
                flat[key] = None
            elif word == "default":
                flat[key] = config()
            else:
                optional = type(None) in typing.get_args(allowed[key])
                raise InputError(
                    f"--option {key}={text}: give {key}=default{f', {key}=none' if optional else ''} "
                    f"or its fields as {key}.<field>=..."
                )
        else:
            flat[key] = _parse_value(key, text.strip(), allowed[key])
    for head, values in nested.items():
        config = _dataclass_in(allowed[head])
        field = defaults[head]
        base = field.default_factory() if field.default_factory is not dataclasses.MISSING else None
        try:
            flat[head] = dataclasses.replace(base, **values) if base is not None else config(**values)
        except InputError as err:
            raise InputError(f"--option {head}.*: {err}") from None
    try:
        EditSettings(source_prompt="source", target_prompt="target", method=method, **flat)
    except InputError as err:
        raise InputError(f"--option: {err}") from None
    return flat


def _json_value(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: _json_value(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, tuple):
        return list(value)
    return value


class EngineMethod:
    """``method(case, out_dir, seed) -> uint8 (T, H, W, 3)`` running :func:`flowstudio.jobs.run`.

    ``options`` are typed :func:`~flowstudio.edit.edit` keyword options (EditSettings fields) used
    for every case; ``device`` / ``dtype`` place the model. ``settings`` (recorded in the run's
    results JSON) holds them with the resolved edit settings (``steps``, ``edit_settings``).
    """

    def __init__(
        self,
        method: str,
        model: str | os.PathLike,
        *,
        device: str = "cpu",
        dtype: str | None = None,
        **options: Any,
    ) -> None:
        from flowstudio.checks import check_device, parse_dtype
        from flowstudio.edit.api import resolve_settings
        from flowstudio.edit.settings import METHODS

        if method != "preset" and method not in METHODS:
            raise ValueError(f"unknown edit method {method!r}; choose one of preset, {', '.join(METHODS)}")
        if method == "preset":
            from flowstudio.edit.presets import RESULTS, preset_available

            if not any(preset_available(name) for name in PRESET_FOR_EDIT_TYPE.values()):
                raise InputError(
                    f"flowstudio-edit:preset: no editing preset is validated on this model (see {RESULTS}); "
                    f"use flowstudio-edit:<method> with one of {', '.join(METHODS)}"
                )
        check_device(device, "--device")
        parse_dtype(dtype, "--dtype")
        self.method = method
        self.model_path = Path(model)
        self.options = options
        self.device = str(device)
        self.dtype = dtype
        self._pipe = None
        # what every case runs with (a preset's values are per case, so only known without one)
        resolved = None
        if method != "preset":
            resolved = resolve_settings(
                source_prompt="source", target_prompt="target", method=method, **options
            ).to_dict()
            for key in BENCH_OWNED:
                resolved.pop(key, None)
        self.settings = {
            "engine": "flowstudio.edit",
            "edit_method": method,
            "model": str(self.model_path),
            "device": self.device,
            "dtype": dtype,
            "options": {k: _json_value(v) for k, v in sorted(options.items())},
            "steps": None if resolved is None else resolved["steps"],
            "edit_settings": None if resolved is None else _json_value(resolved),
        }
        self.description = f"flowstudio edit engine, method {method}"

    def configure(
        self,
        options: Iterable[str] | Mapping[str, Any] = (),
        *,
        device: str = "cpu",
        dtype: str | None = None,
    ) -> EngineMethod:
        """A new method like this one with ``options`` (``key=value`` texts or typed values).

        Raises:
            InputError: an unknown key, a value of the wrong type or out of range, a bad device or
                dtype; before any model loads.
        """
        if isinstance(options, Mapping):
            typed = dict(options)
        else:
            from flowstudio.edit.settings import METHODS

            typed = parse_options(options, self.method if self.method in METHODS else "inversion")
        return EngineMethod(self.method, self.model_path, device=device, dtype=dtype, **typed)

    def _pipeline(self):
        if self._pipe is None:
            from flowstudio.checks import parse_dtype
            from flowstudio.pipeline import WanVideoPipeline

            self._pipe = WanVideoPipeline.from_pretrained(
                self.model_path, device=self.device, dtype=parse_dtype(self.dtype, "--dtype")
            )
        return self._pipe

    def __call__(self, case: Any, out_dir: Path, seed: int) -> np.ndarray:
        """Edit ``case`` with :func:`flowstudio.jobs.run` on the model loaded once for the run."""
        from flowstudio.jobs import EditRequest, run

        preset = PRESET_FOR_EDIT_TYPE.get(case.edit_type) if self.method == "preset" else None
        method = {} if self.method == "preset" else {"method": self.method}
        mask = edit_region(case)
        request = EditRequest(
            source=case.load_source(),
            source_prompt=case.source_prompt,
            target_prompt=case.target_prompt,
            preset=preset,
            mask=mask,
            seed=seed,
            # scored against the case's own files: edit at the case's size, not the model's trained one
            size="native",
            device=self.device,
            dtype=self.dtype,
            **method,
            **self.options,
        )
        result = run(request, model=self._pipeline())
        self.last_case_info = {
            "model_calls": result.model_calls,
            "row_evaluations": result.info["row_evaluations"],
        }
        return result.frames


def bench_method(name: str) -> EngineMethod:
    """Factory the benchmark calls for ``flowstudio-edit:<name>``."""
    from flowstudio.models import resolve_model

    return EngineMethod(name, str(resolve_model(None)))  # $FLOWSTUDIO_MODEL, else the toy model
