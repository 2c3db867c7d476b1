"""DualForceModel: video tower + structure tower + bridge + audio conditioning, one velocity call.

``model(inputs, cache=None, commit=False) -> (v_video, v_struct)`` is the one denoiser contract
(flow matching, ``v = noise - x0``) for training (full sequence, block-causal masks), for denoising a
chunk against a cache (``cache``, ``commit=False``) and for the clean pass that writes the cache
(``commit=True``). Both calls are the same code: a cached chunk call equals the rows of the
full-sequence call in the cache's window-relative layout (``window_positions=True``; checked by
:mod:`flowstudio.avatar.evaluation.verify`), and the rows of the plain (absolute-position, training)
full-sequence call as long as no block has left the window.

Weights are saved as ``config.json`` (the :class:`DualForceConfig`) + ``model.safetensors``; loading
builds the model from the saved config only.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from flowstudio.avatar.model.attention import AttentionCall, SinkRotations
from flowstudio.avatar.model.audio import AudioConditioningModule
from flowstudio.avatar.model.bridge import Bridge, aligned_struct_rows
from flowstudio.avatar.model.config import DualForceConfig
from flowstudio.avatar.model.kv_cache import SINK_BLOCK, DualForceCache
from flowstudio.avatar.model.rates import BlockLayout, TokenRates
from flowstudio.avatar.model.towers import StructureTower, Tower, VideoTower, temporal_rotation
from flowstudio.errors import CheckpointError

logger = logging.getLogger(__name__)

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


@dataclass
class DualForceInputs:
    """Everything one model call sees (a whole sequence or one chunk, optionally with the sink).

    Attributes:
        video: noisy video latents ``(B, C_lat, F, H, W)``; a sink frame holds the clean reference.
        video_sigma: ``(B, F)`` noise level per latent frame (0 for the sink).
        struct: noisy structure latents ``(B, S, C_s)`` at 25 Hz; a sink row is ignored (learned sink).
        struct_sigma: ``(B, S)``.
        audio: audio features ``(B, A, C_a)`` at 50 Hz; a sink row is replaced by the null token.
        layout: block ids and positions (:class:`~flowstudio.avatar.model.rates.BlockLayout`).
        reference: clean reference latent ``(B, C_lat, 1, H, W)``, needed when the config concatenates it.
    """

    video: torch.Tensor
    video_sigma: torch.Tensor
    struct: torch.Tensor
    struct_sigma: torch.Tensor
    audio: torch.Tensor
    layout: BlockLayout
    reference: torch.Tensor | None = None

    def select(self, first_block: int, last_block: int) -> DualForceInputs:
        """The tokens of blocks ``[first_block, last_block)`` (block 0 is the sink), for chunked calls."""
        lay = self.layout

        def pick(ids: torch.Tensor) -> torch.Tensor:
            return torch.nonzero((ids >= first_block) & (ids < last_block)).squeeze(1)

        v, s, a = pick(lay.video_ids), pick(lay.struct_ids), pick(lay.audio_ids)
        layout = BlockLayout(
            lay.video_ids[v], lay.video_pos[v], lay.struct_ids[s], lay.struct_pos[s], lay.audio_ids[a]
        )
        dev = self.video.device
        return DualForceInputs(
            video=self.video.index_select(2, v.to(dev)),
            video_sigma=self.video_sigma.index_select(1, v.to(dev)),
            struct=self.struct.index_select(1, s.to(dev)),
            struct_sigma=self.struct_sigma.index_select(1, s.to(dev)),
            audio=self.audio.index_select(1, a.to(dev)),
            layout=layout,
            reference=self.reference,
        )


class DualForceModel(nn.Module):
    """Dual-tower DiT with a shallow bridge and an audio dual path (see ``docs/methods.md#dualforce``)."""

    def __init__(self, config: DualForceConfig) -> None:
        super().__init__()
        self.config = config
        self.rates = TokenRates.from_config(config.rates)
        self.video = VideoTower(config.video)
        self.struct = StructureTower(config.struct)
        self.bridge = Bridge(
            config.video.dim,
            config.struct.dim,
            config.bridge.head_dim,
            config.bridge_layers,
            aligned_per_latent=self.rates.struct_per_latent if config.bridge.frame_aligned else 0,
        )
        self.audio = AudioConditioningModule(
            config.audio.feature_dim,
            config.audio.hidden_dim,
            config.video.dim,
            config.struct.dim,
            self.rates.audio_per_latent,
            paths=config.audio.paths,
            struct_trains_encoder=config.audio.struct_trains_encoder,
        )

    # ------------------------------------------------------------------------------------------

    def new_cache(self, window: int | None = None) -> DualForceCache:
        """An empty cache sized from the config (``window`` defaults to ``forcing.window_chunks``)."""
        window = self.config.forcing.window_chunks if window is None else window
        return DualForceCache.create(
            self.config.video.num_layers,
            self.config.struct.num_layers,
            len(self.config.bridge_layers),
            window,
            keep_sink=self.config.forcing.reference_sink,
        )

    def _video_input(self, inputs: DualForceInputs) -> torch.Tensor:
        """Assemble the tower input channels: ``[latent, mask?, reference?]`` (MOVA's 36-channel layout)."""
        spec = self.config.video_input
        parts = [inputs.video]
        is_sink = (inputs.layout.video_ids == SINK_BLOCK).to(inputs.video.device, inputs.video.dtype)
        shape = (inputs.video.shape[0], 1, inputs.video.shape[2], *inputs.video.shape[3:])
        if spec.mask_channels:
            mask = is_sink.view(1, 1, -1, 1, 1).expand(shape)
            parts.append(mask.expand(-1, spec.mask_channels, -1, -1, -1))
        if spec.concat_reference or spec.reference_every_frame:
            if inputs.reference is None:
                raise ValueError(
                    "this config concatenates the reference latent; pass DualForceInputs.reference"
                )
            reference = inputs.reference.to(inputs.video.dtype).expand(-1, -1, shape[2], -1, -1)
            parts.append(
                reference if spec.reference_every_frame else reference * is_sink.view(1, 1, -1, 1, 1)
            )
        return torch.cat(parts, dim=1) if len(parts) > 1 else inputs.video

    def _cross_sigmas(self, inputs: DualForceInputs) -> tuple[torch.Tensor, torch.Tensor]:
        """The other modality's sigma at each frame: ``(B, F)`` for video, ``(B, S)`` for structure."""
        layout = inputs.layout
        owner = layout.struct_latent_index(self.rates.struct_per_latent).to(inputs.video.device)
        match = (layout.video_pos.to(owner.device)[:, None] == owner[None, :]).to(inputs.struct_sigma.dtype)
        video_other = (inputs.struct_sigma @ match.T) / match.sum(1).clamp_min(1)
        struct_other = inputs.video_sigma.to(match.dtype) @ (match / match.sum(0).clamp_min(1))
        return video_other, struct_other

    def _sink_rotations(self, tower: Tower, ids: torch.Tensor, modality: int) -> SinkRotations:
        """Per query block of ``ids`` whose window has rolled, the rotation moving the sink forward by
        that block's window shift (``modality`` 0: video positions, 1: structure positions)."""
        window = self.config.forcing.window_chunks
        shifts = {int(b): self.rates.window_shift(int(b), window)[modality] for b in ids.unique()}
        return tuple((b, temporal_rotation(tower.rope, s)) for b, s in sorted(shifts.items()) if s)

    def forward(
        self,
        inputs: DualForceInputs,
        cache: DualForceCache | None = None,
        commit: bool = False,
        *,
        window_positions: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Velocities ``(v_video (B, C_lat, F, H, W), v_struct (B, S, C_s))``.

        Without ``cache``: full-sequence forward with block-causal masks, at the layout's absolute
        positions (training), or with ``window_positions=True`` in the streaming cache's layout (every
        block sees the sink at 0 and its window from position 1). With ``cache``: attend to the
        committed blocks plus the current tokens, embedded at ``absolute - cache shift`` (the cache's
        window-relative positions, :mod:`~flowstudio.avatar.model.kv_cache`); ``commit=True`` stages and
        commits the current K/V (re-rotating the kept keys when blocks leave the window).

        The cache belongs to the caller (one per stream, from :meth:`new_cache`); the model keeps no
        per-call or per-stream state, so one model can serve interleaved streams, each passing its own.
        """
        if commit and cache is None:
            raise ValueError("commit=True needs a cache")
        if window_positions and cache is not None:
            raise ValueError("window_positions is for full-sequence calls; a cache holds its own layout")
        window = self.config.forcing.window_chunks
        keep_sink = self.config.forcing.reference_sink
        layout = inputs.layout
        # Positions of this call: a cache has moved its keys back by `shift`; the sink stays at 0.
        pos_v, pos_s = layout.video_pos, layout.struct_pos
        if cache is not None:
            pos_v = torch.where(layout.video_ids == SINK_BLOCK, pos_v, pos_v - cache.video.shift)
            pos_s = torch.where(layout.struct_ids == SINK_BLOCK, pos_s, pos_s - cache.struct.shift)
        tokens_v, grid, rot_v = self.video.embed(self._video_input(inputs), pos_v)
        per_frame = grid[1] * grid[2]
        ids_v = layout.video_ids.repeat_interleave(per_frame).to(tokens_v.device)
        ids_s = layout.struct_ids.to(tokens_v.device)
        tokens_s, rot_s = self.struct.embed(inputs.struct, ids_s, pos_s)
        ctx_v, ctx_s = self.audio(inputs.audio, layout.audio_ids)
        other_v, other_s = self._cross_sigmas(inputs)
        emb_v, mod_v = self.video.time(
            inputs.video_sigma.repeat_interleave(per_frame, 1), other_v.repeat_interleave(per_frame, 1)
        )
        emb_s, mod_s = self.struct.time(inputs.struct_sigma, other_s)

        audio_ids = layout.audio_ids.to(tokens_v.device)
        turn_v = self._sink_rotations(self.video, layout.video_ids, 0) if window_positions else ()
        turn_s = self._sink_rotations(self.struct, layout.struct_ids, 1) if window_positions else ()
        # Per-call attention inputs, handed to every block: nothing is stored on the towers.
        call_v = AttentionCall(
            ids_v, audio_ids, window, keep_sink, cache.video if cache else None, commit, turn_v
        )
        call_s = AttentionCall(
            ids_s, audio_ids, window, keep_sink, cache.struct if cache else None, commit, turn_s
        )
        aligned_rows = None
        if self.bridge.aligned_per_latent:
            owner = layout.struct_latent_index(self.rates.struct_per_latent)
            aligned_rows = aligned_struct_rows(layout.video_pos, owner, self.rates.struct_per_latent)
        for i in range(max(len(self.video.blocks), len(self.struct.blocks))):
            if i < len(self.video.blocks):
                tokens_v = self.video.block(i, tokens_v, ctx_v, mod_v, rot_v, call_v)
            if i < len(self.struct.blocks):
                tokens_s = self.struct.block(i, tokens_s, ctx_s, mod_s, rot_s, call_s)
            if i in self.bridge:
                tokens_v, tokens_s = self.bridge(
                    i,
                    tokens_v,
                    tokens_s,
                    video_ids=ids_v,
                    struct_ids=ids_s,
                    window=window,
                    struct_cache=cache.bridge_struct if cache else None,
                    video_cache=cache.bridge_video if cache else None,
                    commit=commit,
                    keep_sink=keep_sink,
                    aligned_rows=aligned_rows,
                )
        v_video = self.video.unpatchify(self.video.head(tokens_v, emb_v), grid)
        v_struct = self.struct.head(tokens_s, emb_s)
        if commit and cache is not None:
            cache.commit(
                ids_v.cpu(),
                ids_s.cpu(),
                video_positions=pos_v.repeat_interleave(per_frame),
                struct_positions=pos_s,
                rerotate_video=self.video.rerotate,
                rerotate_struct=self.struct.rerotate,
            )
        return v_video, v_struct

    # ------------------------------------------------------------------------------------------

    def save_pretrained(self, folder: str | Path) -> Path:
        """Write ``config.json`` + ``model.safetensors`` to ``folder``."""
        from safetensors.torch import save_file

        root = Path(folder)
        root.mkdir(parents=True, exist_ok=True)
        self.config.save(root / CONFIG_NAME)
        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        save_file(state, str(root / WEIGHTS_NAME))
        return root

    @classmethod
    def from_pretrained(
        cls, folder: str | Path, *, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
    ) -> DualForceModel:
        """Build from the folder's own ``config.json`` and load ``model.safetensors`` (strict)."""
        root = Path(folder)
        raw_config, weights = read_checkpoint_folder(
            root,
            what="DualForce checkpoint",
            fix="train one with `flowstudio avatar train` or convert MOVA with "
            "`flowstudio avatar convert-mova`",
        )
        config = DualForceConfig.from_dict(raw_config)
        model = cls(config)
        missing, unexpected = model.load_state_dict(weights, strict=False)
        if missing or unexpected:
            raise CheckpointError(
                f"{root / WEIGHTS_NAME}: weights do not match its config.json "
                f"(missing {missing[:5]}, unexpected {unexpected[:5]})"
            )
        return model.to(device=device, dtype=dtype).eval()


def read_checkpoint_folder(
    folder: str | Path, *, what: str, fix: str
) -> tuple[dict, dict[str, torch.Tensor]]:
    """``(config dict, tensors)`` of a ``save_pretrained`` folder (``config.json`` + ``model.safetensors``).

    Raises:
        CheckpointError: a file is missing, or corrupt / truncated; the message names ``what`` the
            folder was for and ends with ``fix`` (what to do).
    """
    from safetensors.torch import load_file

    root = Path(folder)
    for name in (CONFIG_NAME, WEIGHTS_NAME):
        if not (root / name).is_file():
            raise CheckpointError(f"{what} {str(root)!r} has no {name}: {fix}")
    try:
        return json.loads((root / CONFIG_NAME).read_text()), load_file(str(root / WEIGHTS_NAME))
    except Exception as err:  # a corrupt or truncated file: say which and what to do
        raise CheckpointError(f"{what} {str(root)!r} could not be read ({err}): {fix}") from err
