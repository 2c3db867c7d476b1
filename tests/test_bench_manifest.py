"""Test-set manifests (schema, validation that lists every problem, hashes) and the built-in sets."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from flowstudio.bench.io import load_frames, load_mask, save_frames, save_mask, sha256_file
from flowstudio.bench.manifest import ManifestError, load_testset, record_hashes, write_manifest
from flowstudio.bench.schema import EDIT_TYPES, MANIFEST_SCHEMA, schema_errors
from flowstudio.bench.sets import SHAPEWORLD_EDITS, make_ecommerce_template, make_shapeworld, resolve_testset
from flowstudio.errors import InputError


@pytest.fixture(scope="module")
def shapeworld(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 10-case shapeworld-v1 (2 of each edit type), 9 frames at 64x64."""
    out = tmp_path_factory.mktemp("sets") / "sw"
    make_shapeworld(out, seed=3, num_cases=10, num_frames=9, height=64, width=64)
    return out


def small_set(root: Path, cases: int = 2) -> Path:
    """A hand-written manifest with mp4 clips and npz masks."""
    from flowstudio.video import write_video

    rng = np.random.default_rng(0)
    items = []
    for i in range(cases):
        frames = rng.integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
        write_video(root / "clips" / f"c{i}.mp4", frames, 8)
        save_mask(root / "masks" / f"c{i}.npz", np.zeros((5, 32, 32), bool))
        items.append(
            {
                "id": f"c{i}",
                "edit_type": "color",
                "source": f"clips/c{i}.mp4",
                "mask": f"masks/c{i}.npz",
                "source_prompt": "a white shoe",
                "target_prompt": "a red shoe",
                "tags": ["shoe"],
            }
        )
    return write_manifest(
        root / "manifest.json",
        {"format": "flowstudio-bench-manifest", "version": 1, "name": "small", "cases": items},
    )


def test_shapeworld_is_deterministic_complete_and_cached(shapeworld, tmp_path):
    testset = load_testset(shapeworld)
    assert len(testset) == 10 and testset.name == "shapeworld-v1"
    assert {c.edit_type for c in testset} == set(SHAPEWORLD_EDITS)
    for case in testset:
        assert case.target is not None and case.mask is not None and case.target_mask is not None
        assert case.source_prompt != case.target_prompt
        assert set(case.sha256) == {"source", "mask", "target", "target_mask", "target_first_frame"}
    case = testset.cases[1]  # a colour edit: only object pixels change
    source, target, mask = case.load_source(), case.load_target(), case.load_mask()
    assert source.shape == (9, 64, 64, 3) and mask.shape == (9, 64, 64)
    assert np.array_equal(source[~mask], target[~mask]) and not np.array_equal(source, target)
    # same seed, another folder: byte-identical files
    again = make_shapeworld(tmp_path / "again", seed=3, num_cases=10, num_frames=9, height=64, width=64)
    assert [c.sha256 for c in again] == [c.sha256 for c in testset]
    # reused, not regenerated, when the folder already holds it
    stamp = (shapeworld / "manifest.json").stat().st_mtime_ns
    make_shapeworld(shapeworld, seed=3, num_cases=10, num_frames=9, height=64, width=64)
    assert (shapeworld / "manifest.json").stat().st_mtime_ns == stamp
    other = make_shapeworld(tmp_path / "other", seed=4, num_cases=5, num_frames=9, height=64, width=64)
    assert other.cases[0].sha256 != testset.cases[0].sha256


def test_validation_lists_every_problem_and_runs_nothing(shapeworld, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(shapeworld, broken)
    data = json.loads((broken / "manifest.json").read_text())
    cases = data["cases"]
    (broken / cases[0]["source"]).unlink()  # missing file
    save_mask(broken / cases[1]["mask"], np.zeros((9, 32, 32), bool))  # wrong size (and hash)
    cases[2]["edit_type"] = "recolour"  # unknown edit type
    cases[4]["id"] = cases[3]["id"]  # duplicate id
    (broken / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(ManifestError) as info:
        load_testset(broken)
    message = str(info.value)
    assert "recolour" in message and "edit_type" in message
    data["cases"][2]["edit_type"] = "color"
    (broken / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(ManifestError) as info:
        load_testset(broken)
    problems = info.value.problems
    assert any("source file" in p and "does not exist" in p for p in problems), problems
    assert any(
        "mask mask.npz is 9 frames of 32x32" in p and "source is 9 frames of 64x64" in p for p in problems
    )
    assert any("has changed: its SHA-256 differs" in p for p in problems)
    assert any("duplicate id" in p for p in problems)
    assert "nothing was run" in str(info.value)


def test_schema_errors_name_the_json_path():
    errors = schema_errors(
        {
            "format": "flowstudio-bench-manifest",
            "version": 1,
            "name": "x",
            "cases": [
                {
                    "id": "a",
                    "edit_type": "color",
                    "source": "",
                    "source_prompt": "p",
                    "target_prompt": "q",
                    "extra": 1,
                }
            ],
        }
    )
    assert any(e.startswith("$.cases[0].source: must not be empty") for e in errors), errors
    assert any("$.cases[0]: unknown key 'extra'" in e for e in errors)
    assert schema_errors({"format": "other"})[0].startswith("$: missing required key")
    assert MANIFEST_SCHEMA["properties"]["cases"]["items"]["properties"]["edit_type"]["enum"] == list(
        EDIT_TYPES
    )
    jsonschema = pytest.importorskip("jsonschema")  # optional independent check of the schema itself
    jsonschema.Draft202012Validator.check_schema(MANIFEST_SCHEMA)


def test_mp4_manifest_rehash_and_yaml(tmp_path):
    manifest = small_set(tmp_path)
    assert len(load_testset(manifest)) == 2  # no hashes yet: a warning, not an error
    assert record_hashes(manifest) == 4
    testset = load_testset(manifest)
    assert testset.cases[0].sha256["source"] == sha256_file(tmp_path / "clips" / "c0.mp4")
    assert load_frames(testset.cases[0].source).shape == (5, 32, 32, 3)
    import yaml

    yaml_file = tmp_path / "manifest.yaml"
    yaml_file.write_text(yaml.safe_dump(json.loads(manifest.read_text())))
    assert [c.id for c in load_testset(yaml_file)] == ["c0", "c1"]
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ManifestError, match="not valid JSON"):
        load_testset(tmp_path / "bad.json")
    with pytest.raises(ManifestError, match="manifest not found"):
        load_testset(tmp_path / "nowhere.json")


def test_io_roundtrip_and_mask_video_threshold(tmp_path):
    frames = np.random.default_rng(0).integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
    assert np.array_equal(load_frames(save_frames(tmp_path / "a.npz", frames)), frames)
    mask = np.zeros((3, 16, 16), bool)
    mask[:, 4:9, 2:7] = True
    assert np.array_equal(load_mask(save_mask(tmp_path / "m.npz", mask)), mask)
    assert sha256_file(save_frames(tmp_path / "b.npz", frames)) == sha256_file(tmp_path / "a.npz")
    np.save(tmp_path / "m.npy", mask.astype(np.uint8) * 255)
    assert np.array_equal(load_mask(tmp_path / "m.npy"), mask)


def test_ecommerce_template_and_names(tmp_path):
    manifest = make_ecommerce_template(tmp_path / "ecom")
    assert (tmp_path / "ecom" / "clips").is_dir() and (tmp_path / "ecom" / "README.md").is_file()
    with pytest.raises(ManifestError) as info:
        load_testset(manifest)  # the template's clips are yours to add
    assert len(info.value.problems) >= 3 and all("does not exist" in p for p in info.value.problems)
    with pytest.raises(InputError, match="exists"):
        make_ecommerce_template(tmp_path / "ecom")
    with pytest.raises(InputError, match="template"):
        resolve_testset("ecommerce")
