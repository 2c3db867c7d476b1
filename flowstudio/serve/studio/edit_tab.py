"""The studio's edit tab: source, prompts, method and preset, region, strengths, steps; the edit beside
the source; downloads."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gradio as gr

from flowstudio.errors import FlowstudioError
from flowstudio.serve.studio.backend import (
    REGIONS,
    StudioBackend,
    StudioInputError,
    drawn_mask,
    edit_request_data,
    parse_box,
    preset_label,
)
from flowstudio.serve.studio.examples import EDIT_EXAMPLES, edit_example
from flowstudio.serve.studio.follow import Outputs, cancel, downloads, follow, submit_or_say
from flowstudio.serve.studio.tabs import guidance_slider

NO_SOURCE = "Upload a clip or pick a ShapeWorld example."


def edit_tab(backend: StudioBackend) -> None:
    """Lay out the edit tab inside the current ``gr.Tab`` and wire its events."""
    from flowstudio.edit.presets import PRESETS
    from flowstudio.edit.settings import METHODS

    presets = [("none (the options below)", "")] + [(preset_label(p), name) for name, p in PRESETS.items()]
    with gr.Row():
        with gr.Column(scale=1):
            source = gr.Video(label="Source clip", sources=["upload"], elem_id="edit-source", height=240)
            with gr.Row():
                example = gr.Dropdown(
                    [e.label for e in EDIT_EXAMPLES], value=EDIT_EXAMPLES[0].label, label="ShapeWorld example"
                )
                use_example = gr.Button("Use example", elem_id="edit-use-example", scale=0)
            source_info = gr.Markdown(NO_SOURCE, elem_id="edit-source-info")
            source_prompt = gr.Textbox(
                label="Source prompt (what the clip shows)", elem_id="edit-source-prompt"
            )
            target_prompt = gr.Textbox(
                label="Target prompt (what the edit should show)", elem_id="edit-target-prompt"
            )
            with gr.Row():
                method = gr.Dropdown(list(METHODS), value="flowedit", label="Method")
                preset = gr.Dropdown(presets, value="", label="Preset", elem_id="edit-preset")
            preset_note = gr.Markdown("")
            with gr.Row():
                start = backend.page_defaults()["edit"]
                steps = gr.Slider(1, 50, value=start["steps"], step=1, label="Steps", elem_id="edit-steps")
                seed = gr.Number(0, precision=0, label="Seed", minimum=0)
            with gr.Accordion("Edit region", open=True):
                region = gr.Radio(list(REGIONS), value=REGIONS[0], label="Where the edit may change the clip")
                first_frame = gr.ImageEditor(
                    label="First frame: paint the region (used with 'drawn mask')",
                    type="numpy",
                    sources=["upload"],
                    brush=gr.Brush(colors=["#ff3030"], default_size=12, color_mode="fixed"),
                    transforms=(),
                    height=300,
                    elem_id="edit-mask",
                )
                box = gr.Textbox(
                    label="Box x0, y0, x1, y1 in source pixels (used with 'box')",
                    placeholder="32, 24, 96, 104",
                )
            with gr.Accordion("Strength", open=False):
                source_guidance = guidance_slider(
                    start["source_guidance"], "Source guidance (CFG)", "edit-source-guidance"
                )
                target_guidance = guidance_slider(
                    start["target_guidance"], "Target guidance (CFG)", "edit-target-guidance"
                )
                blend_strength = gr.Slider(
                    0.0, 1.0, value=1.0, step=0.05, label="Keep the source outside the region (blend)"
                )
                injection_strength = gr.Slider(
                    0.0, 1.0, value=0.0, step=0.05, label="Feature injection (0: off)"
                )
            with gr.Row():
                run = gr.Button("Run edit", variant="primary", elem_id="edit-run")
                stop = gr.Button("Cancel", elem_id="edit-cancel")
        with gr.Column(scale=1):
            status = gr.Markdown("", elem_id="edit-status")
            with gr.Row():
                shown_source = gr.Video(label="Source", interactive=False, elem_id="edit-shown-source")
                result = gr.Video(label="Edit", interactive=False, elem_id="edit-result")
            files = gr.File(
                label="Downloads: edit, side-by-side, JSON record",
                file_count="multiple",
                interactive=False,
                elem_id="edit-downloads",
            )
    job = gr.State(None)

    def on_example(label: str) -> Outputs:
        try:
            path, source_text, target_text = edit_example(label, backend.upload_folder())
        except FlowstudioError as error:
            return gr.skip(), f"**Example failed.** {error}", gr.skip(), gr.skip(), gr.skip()
        info, frame = describe_source(path)
        return str(path), info, source_text, target_text, frame

    def on_source(path: str | None) -> Outputs:
        return describe_source(Path(path)) if path else (NO_SOURCE, None)

    def on_preset(name: str) -> Outputs:
        # the preset's method, steps and guidance go into the controls: the page sends them with
        # every request, and explicit values win over a preset's
        note, values = backend.preset_choice(name)
        if values is None:
            return note, gr.skip(), gr.skip(), gr.skip(), gr.skip()
        return note, values["method"], values["steps"], values["source_guidance"], values["target_guidance"]

    use_example.click(on_example, example, [source, source_info, source_prompt, target_prompt, first_frame])
    source.change(on_source, source, [source_info, first_frame])
    preset.change(on_preset, preset, [preset_note, method, steps, source_guidance, target_guidance])

    def on_run(
        source_path: str | None,
        source_text: str,
        target_text: str,
        method_name: str,
        preset_name: str | None,
        steps_value: float,
        seed_value: float | None,
        region_name: str,
        editor: Any,
        box_text: str,
        sg: float,
        tg: float,
        blend: float,
        injection: float,
        request: gr.Request,
        progress: gr.Progress = gr.Progress(),
    ) -> Iterator[Outputs]:
        def build(folder: Path) -> dict[str, Any]:
            if not source_path:
                raise StudioInputError(f"no source clip. {NO_SOURCE}")
            kept = backend.keep_upload(source_path, folder, "source")
            mask_file = None
            if region_name == "drawn mask":
                mask = drawn_mask(editor, video_size(kept))
                if mask is not None:
                    from PIL import Image

                    mask_file = folder / "mask.png"
                    Image.fromarray(mask).save(mask_file)
            return edit_request_data(
                source=kept,
                source_prompt=source_text,
                target_prompt=target_text,
                method=method_name,
                preset=preset_name or None,
                steps=int(steps_value),
                source_guidance=sg,
                target_guidance=tg,
                blend_strength=blend,
                injection_strength=injection,
                seed=int(seed_value or 0),
                region=region_name,
                mask_file=mask_file,
                box=parse_box(box_text) if region_name == "box" else None,
            )

        job_id, said = submit_or_say(backend, build, (gr.skip(), gr.skip(), gr.skip(), None), request)
        if said is not None:
            yield said
            return

        def finished(done: dict[str, Path]) -> Outputs:
            # the source as the job read it (the kept copy), so the pair shown is the pair edited
            kept = read_record(done).get("request", {}).get("source")
            return kept, str(done["video"]), downloads(done), job_id

        yield from follow(backend, job_id, progress, finished, (gr.skip(), gr.skip(), gr.skip(), job_id))

    inputs = [source, source_prompt, target_prompt, method, preset, steps, seed, region, first_frame, box]
    inputs += [source_guidance, target_guidance, blend_strength, injection_strength]
    # no limit: each visitor follows their own job; the one worker runs them one after another
    run.click(on_run, inputs, [status, shown_source, result, files, job], concurrency_limit=None)
    stop.click(lambda job_id: cancel(backend, job_id), job, status)


def video_size(path: Path) -> tuple[int, int]:
    """``(height, width)`` of a clip's first frame."""
    from flowstudio.video import read_video

    clip = read_video(path, max_frames=1)
    return clip.height, clip.width


def describe_source(path: Path) -> tuple[str, Any]:
    """The source's size line and its first frame for the mask editor (or what is wrong with it)."""
    from flowstudio.video import read_video

    try:
        clip = read_video(path)
    except FlowstudioError as error:
        return f"**This clip cannot be read.** {error}", None
    frame = clip.frames[0]
    info = (
        f"Source: {clip.width}x{clip.height} pixels, {clip.num_frames} frames at {clip.fps:g} fps "
        "(a box is given in these pixels)."
    )
    return info, {"background": frame, "layers": [], "composite": frame}


def read_record(files: dict[str, Path]) -> dict[str, Any]:
    """A finished job's JSON record, or ``{}`` if it cannot be read."""
    try:
        return json.loads(files["record"].read_text(encoding="utf-8"))
    except (KeyError, OSError, ValueError):
        return {}
