"""The editing engine runs as a benchmark method: `bench run --method flowstudio-edit:<name>`."""

from __future__ import annotations

import numpy as np
import pytest

from flowstudio.bench.methods import get_method
from flowstudio.errors import InputError


class FakeCase:
    id = "case-0"
    edit_type = "color"
    source_prompt = "a red bottle on a wooden table"
    target_prompt = "a blue bottle on a wooden table"

    def load_source(self) -> np.ndarray:
        return np.random.default_rng(0).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)

    def load_mask(self):
        return None


def test_engine_method_edits_a_case(tiny_checkpoint, monkeypatch, tmp_path):
    monkeypatch.setenv("FLOWSTUDIO_MODEL", str(tiny_checkpoint))
    method = get_method("flowstudio-edit:flowedit")
    frames = method(FakeCase(), tmp_path, seed=0)
    assert frames.shape == (5, 32, 32, 3) and frames.dtype == np.uint8
    assert method.settings["edit_method"] == "flowedit"


def test_engine_method_needs_a_model(monkeypatch, tmp_path):
    monkeypatch.delenv("FLOWSTUDIO_MODEL", raising=False)
    monkeypatch.setattr("flowstudio.models.TOY_MODEL", tmp_path / "no-toy-model")
    with pytest.raises(InputError, match="FLOWSTUDIO_MODEL"):
        get_method("flowstudio-edit:inversion")


def test_engine_method_defaults_to_the_packaged_toy_model(monkeypatch):
    from flowstudio.models import TOY_MODEL, toy_model_available

    monkeypatch.delenv("FLOWSTUDIO_MODEL", raising=False)
    if not toy_model_available():
        pytest.skip("no packaged toy model in this checkout")
    from flowstudio.edit.bench_adapter import bench_method

    assert bench_method("inversion").model_path == TOY_MODEL


def test_the_preset_method_refuses_while_no_preset_is_validated(tiny_checkpoint, monkeypatch):
    from dataclasses import replace

    from flowstudio.edit.bench_adapter import EngineMethod
    from flowstudio.edit.presets import PRESETS

    assert EngineMethod("preset", tiny_checkpoint).method == "preset"  # the colour preset is validated
    for name in list(PRESETS):
        monkeypatch.setitem(PRESETS, name, replace(PRESETS[name], values=None))
    with pytest.raises(InputError, match="no editing preset is validated on this model"):
        EngineMethod("preset", tiny_checkpoint)


def test_options_are_parsed_by_the_settings_field_types():
    from flowstudio.edit.bench_adapter import parse_options
    from flowstudio.edit.blending import BlendConfig
    from flowstudio.edit.flowedit import FlowEditConfig
    from flowstudio.edit.injection import InjectionConfig

    options = parse_options(
        [
            "steps=3",
            "target_guidance=7.5",
            "cache_on_cpu=false",
            "inversion_solver=euler",
            "first_frame=none",
            "max_batch_rows=none",
            "flowedit.n_avg=2",
            "injection.end=0.4",
            "injection.blocks=0,1",
            "blend=default",
        ],
        method="flowedit",
    )
    assert options == {
        "steps": 3,
        "target_guidance": 7.5,
        "cache_on_cpu": False,
        "inversion_solver": "euler",
        "first_frame": "none",
        "max_batch_rows": None,
        "flowedit": FlowEditConfig(n_avg=2),
        "injection": InjectionConfig(end=0.4, blocks=(0, 1)),
        "blend": BlendConfig(),
    }


@pytest.mark.parametrize(
    ("pair", "message"),
    [
        ("stpes=3", r"--option stpes: unknown engine option; allowed: .*\bsteps\b"),
        ("seed=3", r"--option seed: unknown engine option \(set by the benchmark\)"),
        ("steps", r"expected key=value"),
        ("steps=abc", r"--option steps=abc: expected an integer"),
        ("steps=0", r"--option: steps must be"),
        ("shift=fast", r"--option shift=fast: expected a number"),
        ("cache_on_cpu=maybe", r"expected true or false"),
        ("first_frame=last", r"choose one of source, image, none"),
        ("flowedit.n_avg=0", r"--option flowedit\.\*: n_avg must be >= 1"),
        ("flowedit.bogus=1", r"--option flowedit.bogus: unknown engine option"),
        ("injection=yes", r"injection=default, injection=none"),
    ],
)
def test_bad_options_are_one_line_errors_naming_the_key(pair, message):
    from flowstudio.edit.bench_adapter import parse_options

    with pytest.raises(InputError, match=message) as caught:
        parse_options([pair])
    assert "\n" not in str(caught.value)


def test_repeated_options_are_refused():
    from flowstudio.edit.bench_adapter import parse_options

    with pytest.raises(InputError, match="steps is given twice"):
        parse_options(["steps=2", "steps=3"])
    with pytest.raises(InputError, match="one or the other"):
        parse_options(["blend=default", "blend.strength=0.5"])


def test_configured_engine_runs_and_records_its_options(tiny_checkpoint, tmp_path):
    from flowstudio.edit.bench_adapter import EngineMethod

    base = EngineMethod("flowedit", tiny_checkpoint)
    calls = {}
    for steps in (2, 3):
        method = base.configure([f"steps={steps}", "target_guidance=1"], device="cpu", dtype="float32")
        assert method is not base and base.options == {}
        frames = method(FakeCase(), tmp_path, seed=0)
        assert frames.shape == (5, 32, 32, 3)
        assert method.settings["options"] == {"steps": steps, "target_guidance": 1.0}
        assert method.settings["steps"] == method.settings["edit_settings"]["steps"] == steps
        assert method.settings["device"] == "cpu" and method.settings["dtype"] == "float32"
        calls[steps] = method.last_case_info["model_calls"]
    assert calls[2] < calls[3]
    with pytest.raises(InputError, match="--dtype must be one of"):
        base.configure(["steps=2"], dtype="fp8")
    with pytest.raises(InputError, match="--device must be a torch device"):
        base.configure(["steps=2"], device="gpu")


class MaskedCase(FakeCase):
    """A case with an object mask (the left half) and what its edit type must preserve."""

    def __init__(self, preserve: str) -> None:
        self.preserve = preserve

    def load_mask(self) -> np.ndarray:
        mask = np.zeros((5, 32, 32), bool)
        mask[:, :, :16] = True
        return mask


@pytest.mark.parametrize(
    ("preserve", "edited"),
    [("outside_mask", "object"), ("inside_mask", "background"), ("none", None)],
)
def test_the_engine_edits_the_region_the_case_does_not_preserve(preserve, edited):
    from flowstudio.edit.bench_adapter import edit_region

    region = edit_region(MaskedCase(preserve))
    if edited is None:
        assert region is None, "style: no mask, the whole frame may change"
        return
    assert region.dtype == bool and region.shape == (5, 32, 32)
    left_is_edited = bool(region[:, :, :16].all() and not region[:, :, 16:].any())
    right_is_edited = bool(region[:, :, 16:].all() and not region[:, :, :16].any())
    # background: the product (the object mask) is what is kept, so the edit region is the rest
    assert (left_is_edited, right_is_edited) == ((True, False) if edited == "object" else (False, True))
    assert edit_region(FakeCase()) is None, "no object mask: no region"
