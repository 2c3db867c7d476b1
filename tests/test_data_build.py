"""`flowstudio data build` (issue 17, item 1) end to end on ShapeWorld footage written as mp4: each made
defect is caught by its own stage, pairs are edited by the toy model and judged by the benchmark's
checks, the Parquet manifest matches the done-records, a run killed with SIGKILL resumes to the same
dataset, Ray with two workers gives the same clips, and own clips use sidecar captions and CLIP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from flowstudio.data.build import build
from flowstudio.data.config import BuildConfig, _hash, load_build_config
from flowstudio.data.footage import DEFECTS, _write_video, video_record
from flowstudio.errors import InputError

pq = pytest.importorskip("pyarrow.parquet")
pytest.importorskip("scenedetect")
pytest.importorskip("imagehash")

# footage indices: clean 0, 1, 58; the defect slots (every 10th, cycling over DEFECTS); 59 duplicates 58
INDICES = (0, 1, 9, 19, 29, 39, 49, 58, 59)
SETTINGS = {"height": 128, "width": 128, "fps": 16.0, "defects": True}
# two steps and one window per shot keep the pair stage to seconds; the checks are the real ones
FAST = {"windows_per_shot": 1, "edit_options": {"steps": 2}}


def write_footage(folder: Path, indices: tuple[int, ...] = INDICES) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for index in indices:
        _write_video((str(folder), 0, index, SETTINGS))
    return folder


@pytest.fixture(scope="module")
def footage(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_footage(tmp_path_factory.mktemp("footage"))


@pytest.fixture(scope="module")
def built(footage: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("built")
    return out, build(footage, out, BuildConfig(**FAST), progress=False)


def test_defect_slots_cycle_over_every_defect() -> None:
    names = [video_record(0, i)["defect"] for i in (9, 19, 29, 39, 49, 59)]
    assert names == list(DEFECTS)
    assert video_record(0, 59)["shots"] == video_record(0, 58)["shots"]
    assert video_record(0, 5)["defect"] is None and video_record(0, 9, defects=False)["defect"] is None


def test_each_made_defect_is_caught_by_its_stage(built: tuple[Path, dict]) -> None:
    _, sheet = built
    expected = {
        "corrupt": ("decode/undecodable", "probe/unreadable"),
        "too_short": ("probe/too_short",),
        "black": ("filters/black_frames",),
        "still": ("filters/frozen_frames",),
        "blurry": ("filters/blurry",),
        "duplicate": ("dedup/near_duplicate",),
    }
    caught = {key.split("(")[1].rstrip(")"): how for key, how in sheet["defects"].items()}
    assert set(caught) == set(DEFECTS)
    for defect, how in caught.items():  # its own stage is among those that dropped its clips
        assert set(how.split(", ")) & set(expected[defect]), (defect, how)
    assert sheet["videos"] == len(INDICES) and sum(sheet["videos_refused"].values()) == 2


def test_pairs_are_judged_and_the_manifest_matches_the_records(built: tuple[Path, dict]) -> None:
    from flowstudio.video import read_video

    out, sheet = built
    pairs = [
        p for f in sorted((out / "done" / "pairs").glob("*.json")) for p in json.loads(f.read_text())["pairs"]
    ]
    assert len(pairs) == sheet["pairs_tried"] == sheet["clips_kept"] > 5
    kept = [p for p in pairs if p["kept"]]
    assert len(kept) == sheet["pairs_kept"]
    changed = [
        n for p in pairs for n, r in p["checks"]["others"]["reads"].items() if r["source"] != r["edit"]
    ]
    assert sheet["others_changed"] == {n: changed.count(n) for n in sorted(set(changed))}
    for pair in pairs:
        checks = pair["checks"]
        assert pair["source_prompt"] != pair["target_prompt"]
        assert checks["kept"] == all(checks[k]["pass"] for k in ("attribute", "others", "keep", "temporal"))
        reads = checks["others"]["reads"]
        assert set(reads) == {"shape", "color", "background", "material"} - {pair["edit_type"]}
        assert {reads["material"]["source"], reads["material"]["edit"]} <= {
            "plain",
            "striped",
            "dotted",
            "checkered",
        }
        assert checks["others"]["pass"] == all(r["source"] == r["edit"] for r in reads.values())
        assert checks["attribute"]["pass"] == (checks["attribute"]["read"] == checks["attribute"]["expected"])
        assert checks["keep"]["pass"] == (checks["keep"]["psnr"] >= 22.0)
        assert checks["temporal"]["pass"] == (checks["temporal"]["ratio"] <= 1.5)
        if not pair["kept"]:
            assert pair["reason"] == pair["failed"][0] and "target_video" not in pair
            assert read_video(out / pair["edited_video"]).frames.shape == (17, 128, 128, 3)  # kept to audit
    table = pq.read_table(out / "manifest.parquet").to_pylist()
    assert [row["id"] for row in table] == sorted(p["id"] for p in kept)
    for row in table:
        source, target = (
            read_video(out / row["source_video"]).frames,
            read_video(out / row["target_video"]).frames,
        )
        assert source.shape == target.shape == (17, 128, 128, 3)
    clips = pq.read_table(out / "clips.parquet").to_pylist()
    assert len(clips) == sheet["clips_kept"] and all(c["num_frames"] == 17 for c in clips)
    assert all(c["caption_source"] == "metadata" for c in clips)
    text = (out / "datasheet.md").read_text()
    assert "clips dropped" in text and f"{sheet['pairs_kept']} kept of {sheet['pairs_tried']}" in text


def _stable(sheet: dict) -> dict:
    return {k: v for k, v in sheet.items() if k not in ("timing", "settings")}


def test_rerun_skips_everything_and_changes_nothing(built: tuple[Path, dict], footage: Path) -> None:
    out, sheet = built
    again = build(footage, out, BuildConfig(**FAST), progress=False)
    assert (
        again["timing"]["clips"]["videos_processed"] == 0
        and again["timing"]["pairs"]["videos_processed"] == 0
    )
    assert _stable(again) == _stable(sheet)


def test_sigkill_then_resume_gives_the_same_dataset(
    built: tuple[Path, dict], footage: Path, tmp_path: Path
) -> None:
    reference_out, reference = built
    out = tmp_path / "out"
    code = (
        "from flowstudio.data.build import build; from flowstudio.data.config import BuildConfig; "
        f"build({str(footage)!r}, {str(out)!r}, BuildConfig(**{FAST!r}), progress=False)"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-c", code], env=env)
    try:
        deadline = time.monotonic() + 240
        while not any((out / "done" / "pairs").glob("*.json")):  # killed inside the pair stage
            assert process.poll() is None, "the build ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.2)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait()
    done_before = len(list((out / "done" / "pairs").glob("*.json")))
    resumed = build(footage, out, BuildConfig(**FAST), progress=False)
    assert resumed["timing"]["clips"]["videos_processed"] == 0
    pair_videos = len(
        list((reference_out / "done" / "pairs").glob("*.json"))
    )  # videos with clips left after dedup
    assert resumed["timing"]["pairs"]["videos_processed"] == pair_videos - done_before
    assert _stable(resumed) == _stable(reference)


def test_two_ray_workers_make_the_same_clips(footage: Path, built: tuple[Path, dict], tmp_path: Path) -> None:
    pytest.importorskip("ray")
    out, _ = built
    sheet = build(
        footage, tmp_path / "ray", BuildConfig(**{**FAST, "pairs": False}), workers=2, progress=False
    )
    assert sheet["timing"]["backend"] == "ray (local)"
    ours = pq.read_table(tmp_path / "ray" / "clips.parquet").to_pylist()
    assert ours == pq.read_table(out / "clips.parquet").to_pylist()


def test_own_clips_take_sidecar_captions_and_need_clip_for_pairs(footage: Path, tmp_path: Path) -> None:
    from tests.test_bench_reference import build_tiny_clip

    own = tmp_path / "own"
    own.mkdir()
    (own / "shop").mkdir()
    video = own / "shop" / "bottle.mp4"
    video.write_bytes((footage / "video_00001.mp4").read_bytes())  # no ShapeWorld sidecar next to it
    video.with_suffix(".txt").write_text("a red bottle on a wooden table\n")
    config = BuildConfig(**FAST)
    with pytest.raises(InputError, match="needs CLIP"):
        build(own, tmp_path / "a", config, progress=False)
    clips = (
        pq.read_table(tmp_path / "a" / "clips.parquet")
        if (tmp_path / "a" / "clips.parquet").exists()
        else None
    )
    assert clips is None  # refused before the pair stage: nothing half-written
    assert list((tmp_path / "a" / "done" / "segments").glob("*.json"))  # the clips are kept for the rerun
    clip = build_tiny_clip(tmp_path / "clip")
    sheet = build(own, tmp_path / "a", BuildConfig(**FAST, clip_model=str(clip)), progress=False)
    assert sheet["timing"]["clips"]["videos_processed"] == 0
    rows = pq.read_table(tmp_path / "a" / "clips.parquet").to_pylist()
    assert {r["caption"] for r in rows} == {"a red bottle on a wooden table"}
    assert {r["video_id"] for r in rows} == {"shop__bottle"}
    pairs = json.loads((tmp_path / "a" / "done" / "pairs" / "shop__bottle.json").read_text())["pairs"]
    assert pairs and all(p["source_prompt"] == "a red bottle on a wooden table" for p in pairs)
    for pair in pairs:
        assert pair["target_prompt"] == pair["source_prompt"].replace("red", pair["target_value"])
        attribute = pair["checks"]["attribute"]
        gain, base = attribute["clip_gain"], attribute["clip_gain_source"]
        assert attribute["pass"] == (gain > 0.0 and gain > base)
        assert "ssim" in pair["checks"]["keep"]


def test_caption_model_adapter_matches_a_direct_generate(tmp_path: Path) -> None:
    import torch
    from PIL import Image
    from transformers import BlipConfig, BlipForConditionalGeneration, BlipImageProcessor, BlipProcessor

    from flowstudio.data.captions import ModelCaptioner
    from tests.test_bench_reference import build_tiny_clip

    tokenizer_folder = build_tiny_clip(tmp_path / "tok")  # a tiny tokenizer with the CLIP layout
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_folder)
    text = dict(
        vocab_size=tokenizer.vocab_size,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        bos_token_id=0,
        sep_token_id=1,
        pad_token_id=1,
        eos_token_id=1,
    )
    vision = dict(
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        image_size=32,
        patch_size=8,
    )
    torch.manual_seed(0)
    folder = tmp_path / "blip"
    BlipForConditionalGeneration(BlipConfig(text_config=text, vision_config=vision)).save_pretrained(folder)
    image_processor = BlipImageProcessor(size={"height": 32, "width": 32})
    BlipProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)
    frames = np.random.default_rng(0).integers(0, 255, (5, 48, 48, 3), dtype=np.uint8)
    caption = ModelCaptioner(folder, max_new_tokens=6)(frames)
    model = BlipForConditionalGeneration.from_pretrained(folder).eval()
    processor = BlipProcessor.from_pretrained(folder)
    inputs = processor(images=Image.fromarray(frames[2]), return_tensors="pt")
    tokens = model.generate(**inputs, max_new_tokens=6, do_sample=False)
    assert caption == " ".join(processor.batch_decode(tokens, skip_special_tokens=True)[0].split())
    with pytest.raises(InputError, match="no config.json"):
        ModelCaptioner(tmp_path / "nothing")


def test_bad_settings_and_inputs_are_refused(tmp_path: Path, footage: Path) -> None:
    with pytest.raises(InputError, match="4k\\+1"):
        BuildConfig(frames=16)
    with pytest.raises(InputError, match="multiple of 32"):
        BuildConfig(height=100)
    with pytest.raises(InputError, match="edit_types"):
        BuildConfig(edit_types=("style",))
    with pytest.raises(InputError, match="caption_model"):
        BuildConfig(captioner="model")
    with pytest.raises(InputError, match="vae_dtype must be one of"):
        BuildConfig(vae_dtype="bf16")
    recipe = tmp_path / "r.yaml"
    recipe.write_text("frames: 17\nwindow: 3\n")
    with pytest.raises(InputError, match="unknown data-build settings \\['window'\\]"):
        load_build_config(recipe)
    with pytest.raises(InputError, match="does not exist"):
        build(tmp_path / "missing", tmp_path / "o", BuildConfig(), progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no video files"):
        build(tmp_path / "empty", tmp_path / "o", BuildConfig(), progress=False)
    with pytest.raises(InputError, match="must not be inside"):
        build(footage, footage / "out", BuildConfig(), progress=False)
    with pytest.raises(InputError, match="editing model folder"):
        build(footage, tmp_path / "o", BuildConfig(model=str(tmp_path / "no-model")), progress=False)


def test_shipped_recipes_load() -> None:
    folder = Path(__file__).parents[1] / "configs" / "data"
    config = load_build_config(folder / "shapeworld.yaml")
    assert config.pairs and config.frames % 4 == 1
    student = load_build_config(folder / "shapeworld_student.yaml")
    # the student's recipe differs only in the model and in leaving the steps to the student
    assert student.model.endswith("student") and "steps" not in student.edit_options
    mine, theirs = student.to_dict(), config.to_dict()
    assert {k for k in mine if mine[k] != theirs[k]} == {"model", "edit_options"}
    assert {k: v for k, v in theirs["edit_options"].items() if k != "steps"} == mine["edit_options"]
    # the 5,000-pair recipe: the student's, with the GAN-stage student and both dtypes in bf16
    big = load_build_config(folder / "shapeworld_5k.yaml").to_dict()
    assert {k for k in big if big[k] != mine[k]} == {"model", "dtype", "vae_dtype"}
    assert big["dtype"] == big["vae_dtype"] == "bfloat16" and big["model"].endswith("gan/student")


def test_vae_dtype_keys_the_pairs_only_when_set() -> None:
    base = BuildConfig()
    # builds made before the key existed keep their done-records: unset is not part of the digest
    older = {k: v for k, v in base.to_dict().items() if k not in ("vae_dtype", "dedup_max_distance")}
    assert base.pair_digest() == _hash(older)
    assert BuildConfig(vae_dtype="bfloat16").pair_digest() != base.pair_digest()
    assert BuildConfig(vae_dtype="bfloat16").segment_digest() == base.segment_digest()


def test_the_built_dataset_feeds_the_distillation_bank(built: tuple[Path, dict]) -> None:
    from flowstudio.distill.prompts import dataset_prompts, is_dataset
    from flowstudio.distill.train import DistillConfig

    out, sheet = built
    assert is_dataset(str(out))
    prompts, clips = dataset_prompts(str(out), 1000, 17, 128, 128)
    clip_rows = pq.read_table(out / "clips.parquet").to_pylist()
    pair_rows = pq.read_table(out / "manifest.parquet").to_pylist()
    assert prompts == [r["caption"] for r in clip_rows] + [r["target_prompt"] for r in pair_rows]
    assert len(clips) == sheet["clips_kept"] + sheet["pairs_kept"] and clips[0].shape == (17, 128, 128, 3)
    with pytest.raises(InputError, match="build the dataset at the run's size"):
        dataset_prompts(str(out), 2, 17, 64, 64)
    config = DistillConfig(teacher="t", prompts=str(out), gan_weight=0.1, i2v_prob=0.5, eval_every=0)
    assert config.prompts == str(out)


def test_a_time_budget_writes_a_partial_datasheet_and_the_rerun_completes(
    footage: Path, tmp_path: Path
) -> None:
    config = BuildConfig(**{**FAST, "pairs": False})
    partial = build(footage, tmp_path / "o", config, progress=False, max_minutes=1e-9)
    assert partial["complete"] is False and partial["videos"] == 0
    assert partial["timing"]["left"]["videos_without_clips_yet"] == len(INDICES)
    assert (tmp_path / "o" / "datasheet.md").read_text().count("**Partial**") == 1
    full = build(footage, tmp_path / "o", config, progress=False)
    assert full["complete"] is True and full["videos"] == len(INDICES)
    assert "**Partial**" not in (tmp_path / "o" / "datasheet.md").read_text()


def test_the_commands_make_footage_and_build_clips(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from flowstudio.cli import app

    runner = CliRunner()
    made = runner.invoke(app, ["data", "footage", str(tmp_path / "f"), "--videos", "3", "--no-defects"])
    assert made.exit_code == 0, made.output
    assert sorted(p.name for p in (tmp_path / "f").glob("*.mp4")) == [f"video_0000{i}.mp4" for i in range(3)]
    built = runner.invoke(
        app, ["data", "build", str(tmp_path / "f"), str(tmp_path / "o"), "--no-pairs", "--workers", "1"]
    )
    assert built.exit_code == 0, built.output
    assert "# Datasheet" in built.output and (tmp_path / "o" / "clips.parquet").is_file()
    bad = runner.invoke(
        app,
        ["data", "build", str(tmp_path / "f"), str(tmp_path / "o"), "--config", str(tmp_path / "no.yaml")],
    )
    assert bad.exit_code == 2 and "no.yaml" in bad.output and "not found" in bad.output


def test_footage_materials_restrict_only_the_material() -> None:
    from flowstudio.data.footage import check_materials, video_record

    plain = ("matte", "glossy")
    changed = 0
    for index in range(40):
        full, restricted = video_record(3, index), video_record(3, index, materials=plain)
        assert len(full["shots"]) == len(restricted["shots"])
        for a, b in zip(full["shots"], restricted["shots"], strict=True):
            assert b["spec"]["material"] in plain
            changed += a["spec"]["material"] != b["spec"]["material"]
            assert {k: v for k, v in a["spec"].items() if k != "material"} == {
                k: v for k, v in b["spec"].items() if k != "material"
            }
            assert a["frames"] == b["frames"]
    assert changed > 10  # 3 in 5 shots were patterned
    assert check_materials(["glossy", "matte"]) == plain and check_materials(None)[2] == "striped"
    with pytest.raises(InputError, match="velvet"):
        check_materials(["matte", "velvet"])


def test_a_defect_no_kept_clip_touches_is_not_sampled_rather_than_missed(tmp_path: Path) -> None:
    """A blurred middle shot whose windows were never taken (a missed cut put every window in the clean
    shot) let nothing defective in: the datasheet says so instead of calling the filter's miss."""
    from flowstudio.data.datasheet import defects_caught

    sidecar = {"defect": "blurry", "shots": [{"frames": 41}, {"frames": 41}]}  # frames 41..81 blurred
    (tmp_path / "v.json").write_text(json.dumps(sidecar))

    def record(*windows: tuple[int, int]) -> dict:
        segments = [{"source_frames": list(w)} for w in windows]
        return {"source": "v.mp4", "status": "ok", "video_id": "v", "dropped": [], "segments": segments}

    assert defects_caught([record((0, 16), (17, 33))], {}, tmp_path) == {"v (blurry)": "not sampled"}
    assert defects_caught([record((0, 16), (41, 57))], {}, tmp_path) == {"v (blurry)": "missed"}
    assert defects_caught([record((30, 46))], {}, tmp_path) == {"v (blurry)": "missed"}  # overlaps frame 41
