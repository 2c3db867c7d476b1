"""The toy VAE's decoder fine-tune (flowstudio.worlds.finetune_decoder) on a tiny random checkpoint:
only the decoder moves, the model folder is the input's but for the decoder, resume, refusals."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from flowstudio.errors import InputError
from flowstudio.train import Budget
from flowstudio.worlds.finetune_decoder import DecoderFinetuneConfig, finetune_decoder


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return {k: v for f in sorted(folder.glob("*.safetensors")) for k, v in load_file(f).items()}


def _small(tiny: Path, tmp_path: Path) -> Path:
    """The tiny checkpoint, recorded as trained at 5 x 32 x 32 (a fast whole clip)."""
    model = tmp_path / "model"
    shutil.copytree(tiny, model)
    (model / "training_summary.json").write_text(
        json.dumps({"config": {"num_frames": 5, "height": 32, "width": 32}})
    )
    return model


def test_only_the_decoder_changes_and_the_run_resumes(tiny_checkpoint, tmp_path):
    model = _small(tiny_checkpoint, tmp_path)
    config = DecoderFinetuneConfig(steps=3, lr=1e-3, eval_every=1, eval_clips=1, checkpoint_every=1)
    first = finetune_decoder(model, tmp_path / "run", config, budget=Budget(max_steps=2), progress=False)
    assert not first["finished"] and first["model_dir"] is None
    assert [step for step, _ in first["step_evals"]] == [1, 2]
    done = finetune_decoder(model, tmp_path / "run", config, progress=False)
    assert done["finished"] and [step for step, _ in done["step_evals"]] == [1, 2, 3]  # state carries them
    before, after = _weights(model / "vae"), _weights(done["model_dir"] / "vae")
    assert set(before) == set(after)
    moved = {k for k in before if not torch.equal(before[k], after[k])}
    assert moved and all(k.startswith(("decoder.", "post_quant_conv.")) for k in moved)
    assert any(k.startswith("decoder.") for k in moved)
    assert (done["model_dir"] / "vae" / "config.json").read_text() == (
        model / "vae" / "config.json"
    ).read_text()
    for part in ("transformer", "text_encoder"):
        assert _weights(done["model_dir"] / part).keys() == _weights(model / part).keys()
        new, old = _weights(done["model_dir"] / part), _weights(model / part)
        assert all(torch.equal(new[k], old[k]) for k in old)


def test_refusals(tiny_checkpoint, tmp_path):
    model = _small(tiny_checkpoint, tmp_path)
    with pytest.raises(InputError, match="vae/config.json"):
        finetune_decoder(tmp_path / "nowhere", tmp_path / "run")
    config = DecoderFinetuneConfig(steps=1, eval_every=0, eval_clips=1)
    finetune_decoder(model, tmp_path / "run", config, budget=Budget(max_steps=0), progress=False)
    with pytest.raises(InputError, match="other settings \\(lr\\)"):
        finetune_decoder(
            model, tmp_path / "run", DecoderFinetuneConfig(steps=1, lr=5e-4, eval_every=0, eval_clips=1)
        )
    with pytest.raises(InputError, match="autocast"):
        DecoderFinetuneConfig(autocast="fp8")
