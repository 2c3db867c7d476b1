"""Check a local Wan2.2-TI2V checkpoint folder without loading it.

:func:`check_checkpoint` reads JSON files and safetensors headers only (never tensor data) and
returns a :class:`CheckReport` listing every problem with a hint on how to fix it. The expected
layout (:data:`REQUIRED_LAYOUT`) and the reference configs of the public checkpoint
(:data:`WAN22_TI2V_5B_CONFIGS`) are data here. See :mod:`flowstudio.weights` for the folder form.
"""

from __future__ import annotations

import json
import math
import re
import struct
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "LATENT_CHANNELS",
    "REQUIRED_LAYOUT",
    "SCALE_FACTOR_SPATIAL",
    "SCALE_FACTOR_TEMPORAL",
    "WAN22_TI2V_5B_CONFIGS",
    "WAN22_TI2V_5B_REPO",
    "CheckReport",
    "ComponentSpec",
    "Problem",
    "check_checkpoint",
]


WAN22_TI2V_5B_REPO = "Wan-AI/Wan2.2-TI2V-5B-Diffusers"
LATENT_CHANNELS = 48
SCALE_FACTOR_SPATIAL = 16
SCALE_FACTOR_TEMPORAL = 4

ProblemKind = Literal["missing_file", "missing_key", "unexpected_key", "bad_value", "bad_json", "bad_file"]
Severity = Literal["error", "warning"]

# ---------------------------------------------------------------------------------------------
# Reference configs of the public checkpoint (data, not code).
#
# Values of Wan-AI/Wan2.2-TI2V-5B-Diffusers, checked against: diffusers
# scripts/convert_wan_to_diffusers.py (``vae22_diffusers_config``; the TI2V branch builds
# ``UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True,
# num_train_timesteps=1000, flow_shift=5.0)`` and ``WanPipeline(..., expand_timesteps=True)``),
# the original Wan2.2 ``wan/configs/wan_ti2v_5B.py`` (dim 3072 = 24 x 128, ffn 14336, 30 layers,
# freq_dim 256, vae_stride (4, 16, 16), sample_shift 5.0) and the published ``config.json`` files
# as quoted by several downstream projects (the VAE file also carries ``clip_output: false``, a
# key diffusers 0.42 no longer reads). The text encoder is google/umt5-xxl's encoder.
# The key sets below are the key sets of those files; the tiny test checkpoint copies them.
# ---------------------------------------------------------------------------------------------

_WAN22_LATENTS_MEAN = [
    -0.2289, -0.0052, -0.1323, -0.2339, -0.2799, 0.0174, 0.1838, 0.1557,
    -0.1382, 0.0542, 0.2813, 0.0891, 0.1570, -0.0098, 0.0375, -0.1825,
    -0.2246, -0.1207, -0.0698, 0.5109, 0.2665, -0.2108, -0.2158, 0.2502,
    -0.2055, -0.0322, 0.1109, 0.1567, -0.0729, 0.0899, -0.2799, -0.1230,
    -0.0313, -0.1649, 0.0117, 0.0723, -0.2839, -0.2083, -0.0520, 0.3748,
    0.0152, 0.1957, 0.1433, -0.2944, 0.3573, -0.0548, -0.1681, -0.0667,
]  # fmt: skip
_WAN22_LATENTS_STD = [
    0.4765, 1.0364, 0.4514, 1.1677, 0.5313, 0.4990, 0.4818, 0.5013,
    0.8158, 1.0344, 0.5894, 1.0901, 0.6885, 0.6165, 0.8454, 0.4978,
    0.5759, 0.3523, 0.7135, 0.6804, 0.5833, 1.4146, 0.8986, 0.5659,
    0.7069, 0.5338, 0.4889, 0.4917, 0.4069, 0.4999, 0.6866, 0.4093,
    0.5709, 0.6065, 0.6415, 0.4944, 0.5726, 1.2042, 0.5458, 1.6887,
    0.3971, 1.0600, 0.3943, 0.5537, 0.5444, 0.4089, 0.7468, 0.7744,
]  # fmt: skip

WAN22_TI2V_5B_CONFIGS: dict[str, dict[str, Any]] = {
    "model_index": {
        "_class_name": "WanPipeline",
        "_diffusers_version": "0.35.0.dev0",
        "boundary_ratio": None,
        "expand_timesteps": True,
        "scheduler": ["diffusers", "UniPCMultistepScheduler"],
        "text_encoder": ["transformers", "UMT5EncoderModel"],
        "tokenizer": ["transformers", "T5TokenizerFast"],
        "transformer": ["diffusers", "WanTransformer3DModel"],
        "transformer_2": [None, None],
        "vae": ["diffusers", "AutoencoderKLWan"],
    },
    "transformer": {
        "_class_name": "WanTransformer3DModel",
        "_diffusers_version": "0.35.0.dev0",
        "added_kv_proj_dim": None,
        "attention_head_dim": 128,
        "cross_attn_norm": True,
        "eps": 1e-06,
        "ffn_dim": 14336,
        "freq_dim": 256,
        "image_dim": None,
        "in_channels": 48,
        "num_attention_heads": 24,
        "num_layers": 30,
        "out_channels": 48,
        "patch_size": [1, 2, 2],
        "pos_embed_seq_len": None,
        "qk_norm": "rms_norm_across_heads",
        "rope_max_seq_len": 1024,
        "text_dim": 4096,
    },
    "vae": {
        "_class_name": "AutoencoderKLWan",
        "_diffusers_version": "0.35.0.dev0",
        "attn_scales": [],
        "base_dim": 160,
        "clip_output": False,
        "decoder_base_dim": 256,
        "dim_mult": [1, 2, 4, 4],
        "dropout": 0.0,
        "in_channels": 12,
        "is_residual": True,
        "latents_mean": _WAN22_LATENTS_MEAN,
        "latents_std": _WAN22_LATENTS_STD,
        "num_res_blocks": 2,
        "out_channels": 12,
        "patch_size": 2,
        "scale_factor_spatial": 16,
        "scale_factor_temporal": 4,
        "temperal_downsample": [False, True, True],
        "z_dim": 48,
    },
    "text_encoder": {
        "architectures": ["UMT5EncoderModel"],
        "classifier_dropout": 0.0,
        "d_ff": 10240,
        "d_kv": 64,
        "d_model": 4096,
        "decoder_start_token_id": 0,
        "dense_act_fn": "gelu_new",
        "dropout_rate": 0.1,
        "eos_token_id": 1,
        "feed_forward_proj": "gated-gelu",
        "initializer_factor": 1.0,
        "is_encoder_decoder": True,
        "is_gated_act": True,
        "layer_norm_epsilon": 1e-06,
        "model_type": "umt5",
        "num_decoder_layers": 24,
        "num_heads": 64,
        "num_layers": 24,
        "output_past": True,
        "pad_token_id": 0,
        "relative_attention_max_distance": 128,
        "relative_attention_num_buckets": 32,
        "scalable_attention": True,
        "tie_word_embeddings": False,
        "tokenizer_class": "T5Tokenizer",
        "torch_dtype": "bfloat16",
        "transformers_version": "4.51.3",
        "use_cache": True,
        "vocab_size": 256384,
    },
    "scheduler": {
        "_class_name": "UniPCMultistepScheduler",
        "_diffusers_version": "0.35.0.dev0",
        "beta_end": 0.02,
        "beta_schedule": "linear",
        "beta_start": 0.0001,
        "disable_corrector": [],
        "dynamic_thresholding_ratio": 0.995,
        "final_sigmas_type": "zero",
        "flow_shift": 5.0,
        "lower_order_final": True,
        "num_train_timesteps": 1000,
        "predict_x0": True,
        "prediction_type": "flow_prediction",
        "rescale_betas_zero_snr": False,
        "sample_max_value": 1.0,
        "solver_order": 2,
        "solver_p": None,
        "solver_type": "bh2",
        "steps_offset": 0,
        "thresholding": False,
        "time_shift_type": "exponential",
        "timestep_spacing": "linspace",
        "trained_betas": None,
        "use_beta_sigmas": False,
        "use_dynamic_shifting": False,
        "use_exponential_sigmas": False,
        "use_flow_sigmas": True,
        "use_karras_sigmas": False,
    },
}


@dataclass(frozen=True)
class ComponentSpec:
    """What one part of the checkpoint folder must hold.

    Attributes:
        name: component name, as in ``model_index.json`` (``"transformer"``, ``"vae"``...).
        config_file: its JSON config, relative to the checkpoint root.
        required_keys: keys the config must have.
        known_keys: every key a valid config may have (empty: not checked); other keys are
            reported as ``unexpected_key`` warnings (diffusers ignores them, but they usually mean
            another model or version).
        weights: ``(single_file, index_file)`` relative to the root: the weights are one
            safetensors file, or a shard index (``weight_map``) plus the shards it lists.
        one_of: groups of files of which at least one must exist.
    """

    name: str
    config_file: str
    required_keys: tuple[str, ...] = ()
    known_keys: frozenset[str] = frozenset()
    weights: tuple[str, str] | None = None
    one_of: tuple[tuple[str, ...], ...] = ()


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


def _known(component: str, extra: str = "") -> frozenset[str]:
    return frozenset(WAN22_TI2V_5B_CONFIGS[component]) | {"_name_or_path", *_words(extra)}


REQUIRED_LAYOUT: dict[str, ComponentSpec] = {
    "model_index": ComponentSpec(
        "model_index",
        "model_index.json",
        required_keys=_words(
            "_class_name expand_timesteps boundary_ratio transformer transformer_2 vae text_encoder "
            "tokenizer scheduler"
        ),
        known_keys=_known("model_index"),
    ),
    "transformer": ComponentSpec(
        "transformer",
        "transformer/config.json",
        required_keys=_words(
            "_class_name patch_size num_attention_heads attention_head_dim in_channels out_channels "
            "text_dim freq_dim ffn_dim num_layers cross_attn_norm qk_norm eps rope_max_seq_len"
        ),
        known_keys=_known("transformer"),
        weights=(
            "transformer/diffusion_pytorch_model.safetensors",
            "transformer/diffusion_pytorch_model.safetensors.index.json",
        ),
    ),
    "vae": ComponentSpec(
        "vae",
        "vae/config.json",
        required_keys=_words(
            "_class_name base_dim decoder_base_dim z_dim dim_mult num_res_blocks temperal_downsample "
            "latents_mean latents_std is_residual patch_size in_channels out_channels "
            "scale_factor_spatial scale_factor_temporal"
        ),
        known_keys=_known("vae"),
        weights=(
            "vae/diffusion_pytorch_model.safetensors",
            "vae/diffusion_pytorch_model.safetensors.index.json",
        ),
    ),
    "text_encoder": ComponentSpec(
        "text_encoder",
        "text_encoder/config.json",
        required_keys=_words(
            "model_type d_model d_ff d_kv num_heads num_layers vocab_size relative_attention_num_buckets "
            "relative_attention_max_distance feed_forward_proj layer_norm_epsilon"
        ),
        # transformers 5 writes a few generic keys that the 4.x export did not.
        known_keys=_known(
            "text_encoder",
            "dtype is_decoder scale_decoder_outputs bos_token_id output_attentions output_hidden_states "
            "return_dict chunk_size_feed_forward",
        ),
        weights=("text_encoder/model.safetensors", "text_encoder/model.safetensors.index.json"),
    ),
    "tokenizer": ComponentSpec(
        "tokenizer",
        "tokenizer/tokenizer_config.json",
        one_of=(("tokenizer/spiece.model", "tokenizer/tokenizer.json"),),
    ),
    "scheduler": ComponentSpec(
        "scheduler",
        "scheduler/scheduler_config.json",
        required_keys=("_class_name", "num_train_timesteps"),
        # diffusers 0.42 adds three UniPC options that the 0.35 export did not write; the rest are
        # FlowMatchEulerDiscreteScheduler's (the scheduler of an exported DMD student)
        known_keys=_known(
            "scheduler",
            "shift_terminal sigma_min sigma_max shift base_shift max_shift base_image_seq_len "
            "max_image_seq_len invert_sigmas stochastic_sampling _student_steps",
        ),
    ),
}

_UNIPC_FLOW = {"use_flow_sigmas": True, "prediction_type": "flow_prediction", "flow_shift": None}
# Flow settings each scheduler family must carry, and the value required (None: any number > 0).
_FLOW_SCHEDULER_KEYS: dict[str, dict[str, Any]] = {
    "UniPCMultistepScheduler": _UNIPC_FLOW,
    "DPMSolverMultistepScheduler": _UNIPC_FLOW,
    "FlowMatchEulerDiscreteScheduler": {"shift": None},
}

_SAFETENSORS_DTYPE_BYTES = {
    **dict.fromkeys(_words("BOOL U8 I8 F8_E4M3 F8_E5M2 F8_E8M0"), 1),
    **dict.fromkeys(_words("I16 U16 F16 BF16"), 2),
    **dict.fromkeys(_words("I32 U32 F32"), 4),
    **dict.fromkeys(_words("I64 U64 F64 C64"), 8),
}
_MAX_HEADER_BYTES = 100 * 1024 * 1024


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a checkpoint folder.

    Attributes:
        component: ``"checkpoint"`` (the folder as a whole, or across components),
            ``"model_index"``, ``"transformer"``, ``"vae"``, ``"text_encoder"``, ``"tokenizer"``
            or ``"scheduler"``.
        kind: ``missing_file``, ``missing_key`` (config key or weight tensor), ``unexpected_key``,
            ``bad_value``, ``bad_json`` or ``bad_file`` (weights truncated or not safetensors).
        detail: what is wrong, naming the file, key or tensor and echoing the value found.
        hint: what to do about it.
        severity: ``"error"`` stops loading; ``"warning"`` (unexpected keys) does not.
    """

    component: str
    kind: ProblemKind
    detail: str
    hint: str
    severity: Severity = "error"


@dataclass
class CheckReport:
    """Result of :func:`check_checkpoint`; ``ok`` is true when no problem is an error."""

    path: Path
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when the folder can be loaded (warnings allowed)."""
        return not self.errors

    @property
    def errors(self) -> list[Problem]:
        """Problems that stop loading."""
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        """Problems worth knowing that do not stop loading."""
        return [p for p in self.problems if p.severity == "warning"]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: ``{"path", "ok", "problems": [{component, kind, detail, hint, severity}]}``."""
        return {"path": str(self.path), "ok": self.ok, "problems": [asdict(p) for p in self.problems]}

    def format(self) -> str:
        """Human-readable report: a verdict line, then one block per problem, errors first."""

        def count(n: int, word: str) -> str:
            return f"{n} {word}{'s' if n != 1 else ''}"

        n_err, n_warn = len(self.errors), len(self.warnings)
        if self.ok:
            lines = [f"OK: {self.path} is a usable Wan2.2-TI2V checkpoint"]
            if n_warn:
                lines[0] += f" ({count(n_warn, 'warning')})"
        else:
            lines = [f"NOT USABLE: {self.path}: {count(n_err, 'error')}, {count(n_warn, 'warning')}"]
        for p in sorted(self.problems, key=lambda p: p.severity != "error"):
            lines.append(f"  {p.severity.upper():7s} [{p.component}] {p.kind}: {p.detail}")
            lines.append(f"          fix: {p.hint}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.format()


def _download_hint(rel: str | None = None) -> str:
    what = f"'{rel}' from that download into this folder" if rel else "the whole folder"
    return (
        f"download {WAN22_TI2V_5B_REPO} on a machine with internet (`hf download {WAN22_TI2V_5B_REPO} "
        f"--local-dir Wan2.2-TI2V-5B-Diffusers`; older huggingface_hub: `huggingface-cli download ...` "
        f"with the same arguments) and copy {what}"
    )


_FORM_HINT = (
    "this folder is not in Wan2.2-TI2V form (48 latent channels, 16x spatial / 4x temporal VAE, one "
    f"transformer); flowstudio needs {WAN22_TI2V_5B_REPO} or a toy model of the same form (Wan2.1 and "
    "Wan2.2-A14B checkpoints use the 16-channel 8x VAE)"
)


# ---------------------------------------------------------------------------------------------
# Checking
# ---------------------------------------------------------------------------------------------


class _Checker:
    """Collects problems while walking one checkpoint folder."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.problems: list[Problem] = []
        self.configs: dict[str, dict[str, Any]] = {}
        self.tensors: dict[str, dict[str, list[int]]] = {}  # component -> tensor name -> shape

    def add(
        self, component: str, kind: ProblemKind, detail: str, hint: str, severity: Severity = "error"
    ) -> None:
        self.problems.append(Problem(component, kind, detail, hint, severity))

    # -- files and JSON ------------------------------------------------------------------------

    def read_json(self, component: str, rel: str) -> Any | None:
        """Parsed JSON of ``rel``, or None after reporting it missing or broken."""
        file = self.root / rel
        if not file.is_file():
            self.add(component, "missing_file", f"{rel} is missing", _download_hint(rel))
            return None
        try:
            return json.loads(file.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            hint = f"the file is damaged or was cut off while copying; {_download_hint(rel)}"
            self.add(component, "bad_json", f"{rel} is not valid JSON ({exc})", hint)
            return None

    def read_config(self, spec: ComponentSpec) -> dict[str, Any] | None:
        """Read a component config and report missing and unknown keys."""
        rel, name = spec.config_file, spec.name
        data = self.read_json(name, rel)
        if data is None:
            return None
        if not isinstance(data, dict):
            detail = f"{rel} holds a JSON {type(data).__name__}, not an object"
            self.add(name, "bad_json", detail, _download_hint(rel))
            return None
        reference = WAN22_TI2V_5B_CONFIGS.get(name, {})
        for key in spec.required_keys:
            if key not in data:
                real = (
                    f" (the 5B reference {WAN22_TI2V_5B_REPO} uses {json.dumps(reference[key])}; a "
                    "smaller or toy model has its own value, e.g. in its training output)"
                    if key in reference
                    else ""
                )
                hint = f"restore '{key}' with this model's value{real}; for the 5B: {_download_hint(rel)}"
                self.add(name, "missing_key", f"{rel} has no key '{key}'", hint)
        if spec.known_keys:
            for key in sorted(set(data) - spec.known_keys):
                detail = f"{rel} has unknown key '{key}' = {_short(data[key])}"
                hint = "diffusers/transformers ignore it; it may come from another model or library version"
                self.add(name, "unexpected_key", detail, hint, severity="warning")
        self.configs[name] = data
        return data

    def expect(self, component: str, rel: str, key: str, ok: bool, rule: str, hint: str = "") -> bool:
        """Report ``bad_value`` for ``key`` of config ``rel`` unless ``ok``; return ``ok``."""
        if not ok:
            value = _short(self.configs.get(component, {}).get(key, "<absent>"))
            self.add(component, "bad_value", f"{rel}: '{key}' is {value}; {rule}", hint or _FORM_HINT)
        return ok

    # -- weights -------------------------------------------------------------------------------

    def read_weights(self, spec: ComponentSpec) -> None:
        """Validate the weights of ``spec`` from safetensors headers; remember tensor shapes."""
        assert spec.weights is not None
        single, index = spec.weights
        if (self.root / index).is_file():
            self._read_sharded(spec.name, index)
        elif (self.root / single).is_file():
            header = self._read_header(spec.name, single)
            if header is not None:
                self.tensors[spec.name] = header
        else:
            folder = self.root / single
            others = sorted(p.name for p in folder.parent.glob("*") if p.suffix in {".bin", ".pt", ".pth"})
            found = f" (found only {', '.join(others)}: flowstudio reads safetensors)" if others else ""
            detail = f"no weights for {spec.name}: neither {single} nor the shard index {index} exists{found}"
            self.add(spec.name, "missing_file", detail, _download_hint(f"{spec.name}/"))

    def _read_sharded(self, component: str, index_rel: str) -> None:
        index = self.read_json(component, index_rel)
        if index is None:
            return
        weight_map = index.get("weight_map") if isinstance(index, dict) else None
        if not isinstance(weight_map, dict) or not weight_map:
            detail = f"{index_rel} has no 'weight_map' (tensor name -> shard file)"
            self.add(component, "bad_value", detail, _download_hint(index_rel))
            return
        folder = str(Path(index_rel).parent)
        recopy = f"the shards and {index_rel} come from different downloads; copy {folder}/ again as a whole"
        by_shard: dict[str, list[str]] = {}
        for tensor, shard in weight_map.items():
            by_shard.setdefault(str(shard), []).append(tensor)
        tensors: dict[str, list[int]] = {}
        complete = True  # shape checks only run on complete weights (no follow-up noise)
        for shard, names in sorted(by_shard.items()):
            rel = f"{folder}/{shard}"
            if not (self.root / rel).is_file():
                detail = (
                    f"{rel} is missing (listed in {index_rel} for {len(names)} tensors, e.g. '{names[0]}')"
                )
                self.add(component, "missing_file", detail, _download_hint(rel))
                complete = False
                continue
            header = self._read_header(component, rel)
            if header is None:
                complete = False
                continue
            absent = [n for n in names if n not in header]
            if absent:
                complete = False
                detail = (
                    f"{rel} lacks {len(absent)} tensors that {index_rel} places there (e.g. '{absent[0]}')"
                )
                self.add(component, "missing_key", detail, recopy)
            stray = [n for n in header if n not in weight_map]
            if stray:
                detail = f"{rel} holds {len(stray)} tensors not in {index_rel} (e.g. '{stray[0]}'): ignored"
                self.add(component, "unexpected_key", detail, recopy, severity="warning")
            tensors.update((n, s) for n, s in header.items() if n in weight_map)
        if complete:
            self.tensors[component] = tensors

    def _read_header(self, component: str, rel: str) -> dict[str, list[int]] | None:
        """Validate one safetensors file from its header; return tensor name -> shape, or None."""
        file = self.root / rel
        size = file.stat().st_size
        hint = f"copy {rel} again and compare its size (or SHA-256) with its page on {WAN22_TI2V_5B_REPO}"

        def bad(msg: str) -> None:
            self.add(component, "bad_file", f"{rel} {msg}", hint)

        with file.open("rb") as fh:
            head = fh.read(8)
            n = struct.unpack("<Q", head)[0] if len(head) == 8 else 0
            if len(head) < 8 or n > min(size - 8, _MAX_HEADER_BYTES):
                bad(f"is not a complete safetensors file ({size} bytes; header length field {n})")
                return None
            raw = fh.read(n)
        try:
            header = json.loads(raw)
            if not isinstance(header, dict):
                raise ValueError("header is not a JSON object")
            shapes, end = {}, 0
            for tensor, info in header.items():
                if tensor == "__metadata__":
                    continue
                start, stop = (int(x) for x in info["data_offsets"])
                shape = [int(d) for d in info["shape"]]
                if stop - start != math.prod(shape) * _SAFETENSORS_DTYPE_BYTES[info["dtype"]]:
                    raise ValueError(f"offsets of tensor '{tensor}' do not match its shape and dtype")
                shapes[tensor], end = shape, max(end, stop)
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
            bad(f"has a corrupt header ({exc}): not a safetensors file, or damaged")
            return None
        data_bytes = size - 8 - n
        if end > data_bytes:
            bad(f"is truncated: its header describes {end} bytes of tensor data, the file holds {data_bytes}")
            return None
        if end < data_bytes:
            bad(f"has {data_bytes - end} unexpected bytes after its tensor data (damaged file)")
            return None
        return shapes

    def expect_tensor(self, component: str, name: str, shape: list[int], why: str) -> None:
        """Report a weight tensor that is absent or whose shape disagrees with the config."""
        tensors = self.tensors.get(component)
        if tensors is None:  # weights unreadable: already reported
            return
        hint = f"{component}/config.json and the weights disagree; copy {component}/ again as a whole"
        if name not in tensors:
            self.add(component, "missing_key", f"{component} weights have no tensor '{name}'", hint)
        elif list(tensors[name]) != list(shape):
            detail = (
                f"{component} tensor '{name}' has shape {tensors[name]}, the config implies {shape} ({why})"
            )
            self.add(component, "bad_value", detail, hint)

    def expect_layers(self, component: str, prefix: str, expected: int, key: str) -> None:
        """Report when the weights hold another number of ``prefix<i>.`` layers than the config."""
        tensors = self.tensors.get(component)
        if tensors is None:
            return
        pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
        found = {int(m.group(1)) for name in tensors if (m := pattern.match(name))}
        if len(found) != expected:
            detail = (
                f"{component} weights hold {len(found)} '{prefix}<i>' layers, config '{key}' says {expected}"
            )
            hint = f"{component}/config.json and the weights disagree; copy {component}/ again as a whole"
            self.add(component, "bad_value", detail, hint)


def _short(value: Any, limit: int = 80) -> str:
    """JSON text of ``value``, cut to ``limit`` characters with an ellipsis."""
    text = json.dumps(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v > 0


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _check_model_index(c: _Checker) -> None:
    cfg = c.read_config(REQUIRED_LAYOUT["model_index"])
    if cfg is None:
        return
    bad = partial(c.expect, "model_index", "model_index.json")
    if "_class_name" in cfg:
        bad("_class_name", cfg["_class_name"] == "WanPipeline", 'expected "WanPipeline"')
    if "expand_timesteps" in cfg:
        bad(
            "expand_timesteps", cfg["expand_timesteps"] is True, "TI2V uses per-token timesteps: must be true"
        )
    if "boundary_ratio" in cfg:
        bad(
            "boundary_ratio",
            cfg["boundary_ratio"] is None,
            "must be null (a ratio means a two-expert A14B model)",
        )
    if "transformer_2" in cfg:
        bad(
            "transformer_2",
            cfg["transformer_2"] in ([None, None], None),
            "must be [null, null] (A14B has two)",
        )
    entries = {
        "transformer": ("diffusers", "WanTransformer3DModel"),
        "vae": ("diffusers", "AutoencoderKLWan"),
        "text_encoder": ("transformers", "UMT5EncoderModel"),
        "tokenizer": ("transformers", None),
        "scheduler": ("diffusers", None),
    }
    for key, (library, cls) in entries.items():
        if key in cfg:
            v = cfg[key]
            ok = isinstance(v, list) and len(v) == 2 and v[0] == library and isinstance(v[1], str)
            bad(key, ok and cls in (None, v[1]), f'expected ["{library}", "{cls or "<class name>"}"]')


def _check_transformer(c: _Checker) -> None:
    spec = REQUIRED_LAYOUT["transformer"]
    cfg = c.read_config(spec)
    c.read_weights(spec)
    if cfg is None:
        return
    name = spec.name
    bad = partial(c.expect, name, spec.config_file)
    if "_class_name" in cfg:
        bad("_class_name", cfg["_class_name"] == "WanTransformer3DModel", "expected WanTransformer3DModel")
    sizes = (
        "num_attention_heads attention_head_dim in_channels out_channels text_dim freq_dim ffn_dim num_layers"
    )
    sizes_ok = all([bad(k, _is_int(cfg[k]), "must be a positive integer") for k in sizes.split() if k in cfg])
    patch = cfg.get("patch_size")
    patches = ([1, 2, 2], [1, 1, 1])  # the real one; the toy variant, 4x the tokens (findings_toy_model.md)
    if "patch_size" in cfg:
        bad("patch_size", patch in patches, "Wan2.2 TI2V patchifies latents by [1, 2, 2]")
        if patch == [1, 1, 1]:
            c.add(
                name,
                "bad_value",
                f"{spec.config_file}: 'patch_size' is [1, 1, 1]: a toy variant (flowstudio's ShapeWorld "
                "models may use it); a real Wan2.2 TI2V checkpoint has [1, 2, 2]",
                "",
                severity="warning",
            )
    for key in ("in_channels", "out_channels"):
        if _is_int(cfg.get(key)):
            bad(key, cfg[key] == LATENT_CHANNELS, f"TI2V latents have {LATENT_CHANNELS} channels")
    for key in ("image_dim", "added_kv_proj_dim"):
        if cfg.get(key) is not None:
            bad(key, False, "must be null: TI2V has no CLIP image branch (that is the I2V-14B form)")
    if not (sizes_ok and patch in patches and all(k in cfg for k in sizes.split())):
        return
    volume = patch[0] * patch[1] * patch[2]
    inner = cfg["num_attention_heads"] * cfg["attention_head_dim"]
    c.expect_tensor(
        name, "patch_embedding.weight", [inner, cfg["in_channels"], *patch], "inner dim, in_channels"
    )
    c.expect_tensor(
        name, "proj_out.weight", [cfg["out_channels"] * volume, inner], "out_channels x patch volume"
    )
    c.expect_tensor(
        name, "condition_embedder.text_embedder.linear_1.weight", [inner, cfg["text_dim"]], "text_dim"
    )
    c.expect_tensor(name, "blocks.0.ffn.net.0.proj.weight", [cfg["ffn_dim"], inner], "ffn_dim")
    c.expect_layers(name, "blocks.", cfg["num_layers"], "num_layers")


def _check_vae(c: _Checker) -> None:
    spec = REQUIRED_LAYOUT["vae"]
    cfg = c.read_config(spec)
    c.read_weights(spec)
    if cfg is None:
        return
    name, rel = spec.name, spec.config_file
    bad = partial(c.expect, name, rel)
    if "_class_name" in cfg:
        bad("_class_name", cfg["_class_name"] == "AutoencoderKLWan", "expected AutoencoderKLWan")
    z, patch = cfg.get("z_dim"), cfg.get("patch_size")
    if "z_dim" in cfg:
        bad("z_dim", z == LATENT_CHANNELS, f"the Wan2.2 VAE has {LATENT_CHANNELS} latent channels")
    if "is_residual" in cfg:
        bad("is_residual", cfg["is_residual"] is True, "the Wan2.2 VAE is residual (true)")
    if "patch_size" in cfg:
        bad("patch_size", patch == 2, "the Wan2.2 VAE folds 2x2 pixel patches into channels")
    for key in ("in_channels", "out_channels"):
        if key in cfg and _is_int(patch):
            bad(key, cfg[key] == 3 * patch * patch, f"must be 3 x patch_size^2 = {3 * patch * patch}")
    for key in ("latents_mean", "latents_std"):
        if key in cfg and _is_int(z):
            values = cfg[key]
            ok = isinstance(values, list) and len(values) == z and all(_is_number(v) for v in values)
            if (
                bad(key, ok, f"must be a list of z_dim = {z} numbers", _download_hint(rel))
                and key == "latents_std"
            ):
                bad(key, all(v > 0 for v in values), "every std must be > 0", _download_hint(rel))
    dim_mult, tdown = cfg.get("dim_mult"), cfg.get("temperal_downsample")
    if isinstance(dim_mult, list) and _is_int(patch) and "scale_factor_spatial" in cfg:
        spatial = patch * 2 ** (len(dim_mult) - 1)
        rule = f"TI2V needs {SCALE_FACTOR_SPATIAL}x = patch_size x 2^(len(dim_mult) - 1) (here {spatial})"
        bad("scale_factor_spatial", cfg["scale_factor_spatial"] == spatial == SCALE_FACTOR_SPATIAL, rule)
    if isinstance(tdown, list) and "scale_factor_temporal" in cfg:
        temporal = 2 ** sum(bool(t) for t in tdown)
        rule = (
            f"TI2V needs {SCALE_FACTOR_TEMPORAL}x = 2^(true entries of temperal_downsample) (here {temporal})"
        )
        bad("scale_factor_temporal", cfg["scale_factor_temporal"] == temporal == SCALE_FACTOR_TEMPORAL, rule)
        if isinstance(dim_mult, list):
            rule = f"needs len(dim_mult) - 1 = {len(dim_mult) - 1} entries"
            bad("temperal_downsample", len(tdown) == len(dim_mult) - 1, rule, _download_hint(rel))
    if _is_int(z) and _is_int(cfg.get("base_dim")) and _is_int(cfg.get("in_channels")):
        conv_in = [cfg["base_dim"], cfg["in_channels"], 3, 3, 3]
        c.expect_tensor(name, "encoder.conv_in.weight", conv_in, "base_dim, in_channels")
        c.expect_tensor(name, "post_quant_conv.weight", [z, z, 1, 1, 1], "z_dim")


def _check_text_encoder(c: _Checker) -> None:
    spec = REQUIRED_LAYOUT["text_encoder"]
    cfg = c.read_config(spec)
    c.read_weights(spec)
    if cfg is None:
        return
    name = spec.name
    if "model_type" in cfg:
        c.expect(name, spec.config_file, "model_type", cfg["model_type"] == "umt5", 'Wan uses UMT5 ("umt5")')
    d_model, layers, vocab = (cfg.get(k) for k in ("d_model", "num_layers", "vocab_size"))
    if _is_int(d_model) and _is_int(layers) and _is_int(vocab):
        tensors = c.tensors.get(name) or {}
        embedding = (
            "encoder.embed_tokens.weight" if "shared.weight" not in tensors and tensors else "shared.weight"
        )
        c.expect_tensor(name, embedding, [vocab, d_model], "vocab_size x d_model")
        c.expect_layers(name, "encoder.block.", layers, "num_layers")


def _check_tokenizer(c: _Checker) -> None:
    spec = REQUIRED_LAYOUT["tokenizer"]
    cfg = c.read_json(spec.name, spec.config_file)
    if cfg is not None and not isinstance(cfg, dict):
        c.add(
            spec.name,
            "bad_json",
            f"{spec.config_file} is not a JSON object",
            _download_hint(spec.config_file),
        )
    for group in spec.one_of:
        if not any((c.root / rel).is_file() for rel in group):
            detail = f"none of {' / '.join(group)} exists (the UMT5 vocabulary)"
            c.add(spec.name, "missing_file", detail, _download_hint("tokenizer/"))
    if (c.root / "tokenizer" / "tokenizer.json").is_file():
        c.read_json(spec.name, "tokenizer/tokenizer.json")


def _check_scheduler(c: _Checker) -> None:
    spec = REQUIRED_LAYOUT["scheduler"]
    cfg = c.read_config(spec)
    if cfg is None or "_class_name" not in cfg:
        return
    name, rel = spec.name, spec.config_file
    bad = partial(c.expect, name, rel)
    flow_keys = _FLOW_SCHEDULER_KEYS.get(cfg["_class_name"])
    if flow_keys is None:
        bad(
            "_class_name",
            False,
            f"not a flow-matching scheduler flowstudio knows ({', '.join(_FLOW_SCHEDULER_KEYS)})",
        )
        return
    for key, want in flow_keys.items():
        if key not in cfg:
            c.add(
                name,
                "missing_key",
                f"{rel} has no key '{key}' (needed for flow matching)",
                _download_hint(rel),
            )
        elif want is None:
            bad(key, _is_number(cfg[key]) and cfg[key] > 0, "must be a number > 0", _download_hint(rel))
        else:
            bad(
                key,
                cfg[key] == want,
                f"must be {json.dumps(want)} for a flow-matching model",
                _download_hint(rel),
            )


def _check_across(c: _Checker) -> None:
    """Checks that span components: the TI2V latent width and the text width."""
    tr, vae, te = (c.configs.get(k, {}) for k in ("transformer", "vae", "text_encoder"))
    z, cin, cout = vae.get("z_dim"), tr.get("in_channels"), tr.get("out_channels")
    if z is not None and cin is not None and not z == cin == cout:
        detail = (
            f"VAE z_dim ({z}) != transformer in_channels ({cin}) / out_channels ({cout}); "
            f"TI2V needs all three = {LATENT_CHANNELS}"
        )
        c.add("checkpoint", "bad_value", detail, _FORM_HINT)
    d_model, text_dim = te.get("d_model"), tr.get("text_dim")
    if d_model is not None and text_dim is not None and d_model != text_dim:
        detail = f"text_encoder d_model ({d_model}) != transformer text_dim ({text_dim})"
        hint = "the text encoder belongs to another model; copy text_encoder/ from the same checkpoint"
        c.add("checkpoint", "bad_value", detail, hint)


def check_checkpoint(path: str | Path) -> CheckReport:
    """Check a local diffusers-format Wan2.2-TI2V checkpoint folder without loading weights.

    Reads ``model_index.json``, every component config, the tokenizer files, shard indexes and
    the headers of the safetensors files (never tensor data). Reports missing files and keys,
    unknown keys (warnings), bad JSON, truncated or corrupt weights, shard indexes naming absent
    shards or tensors, weights whose shapes disagree with their config, and checkpoints not in
    TI2V form (VAE ``z_dim`` == transformer ``in_channels`` == 48, 16x spatial, 4x temporal).

    Args:
        path: the checkpoint folder (the one holding ``model_index.json``).

    Returns:
        A :class:`CheckReport`: ``report.ok`` is true when it can be loaded; ``report.format()``
        is the human-readable text.
    """
    root = Path(path).expanduser()
    checker = _Checker(root)
    if not root.is_dir():
        what = "is a file, not a folder" if root.exists() else "does not exist"
        checker.add("checkpoint", "missing_file", f"checkpoint folder {root} {what}", _download_hint())
        return CheckReport(root, checker.problems)
    _check_model_index(checker)
    _check_transformer(checker)
    _check_vae(checker)
    _check_text_encoder(checker)
    _check_tokenizer(checker)
    _check_scheduler(checker)
    _check_across(checker)
    return CheckReport(root, checker.problems)
