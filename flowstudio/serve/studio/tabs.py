"""The studio's generate tab (text or text+image -> video), avatar tab (image + speech -> video) and
jobs tab (the visitor's recent jobs; cancel or delete one)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import gradio as gr

from flowstudio.serve.studio.backend import StudioBackend, StudioInputError
from flowstudio.serve.studio.examples import avatar_example
from flowstudio.serve.studio.follow import Outputs, cancel, downloads, follow, submit_or_say

#: Frame counts and sides the models take (4k+1 frames; multiples of 32 pixels).
FRAME_CHOICES = [5, 9, 17, 33]
SIDE_CHOICES = [64, 96, 128, 160, 192, 224, 256]


def guidance_slider(value: float, label: str, elem_id: str) -> Any:
    """A classifier-free guidance slider (1 = no guidance, up to 10, in steps of 0.5)."""
    return gr.Slider(1.0, 10.0, value=value, step=0.5, label=label, elem_id=elem_id)


def _result_column(kind: str, label: str) -> tuple[Any, Any, Any]:
    status = gr.Markdown("", elem_id=f"{kind}-status")
    result = gr.Video(label=label, interactive=False, elem_id=f"{kind}-result")
    files = gr.File(
        label="Downloads: video, JSON record",
        file_count="multiple",
        interactive=False,
        elem_id=f"{kind}-downloads",
    )
    return status, result, files


def _video_finished(job_id: str) -> Callable[[dict[str, Path]], Outputs]:
    """What a video job shows when it succeeded: the video, the downloads, and its id."""

    def finished(done: dict[str, Path]) -> Outputs:
        return str(done["video"]), downloads(done), job_id

    return finished


def generate_tab(backend: StudioBackend) -> None:
    """Lay out the generate tab inside the current ``gr.Tab`` and wire its events."""
    with gr.Row():
        with gr.Column(scale=1):
            prompt = gr.Textbox(
                label="Prompt", value="product shot: red shiny bottle, wooden table, turning slowly"
            )
            negative = gr.Textbox(label="Negative prompt")
            image = gr.Image(label="First frame (optional: image-to-video)", type="filepath", height=200)
            with gr.Row():
                frames = gr.Dropdown(FRAME_CHOICES, value=17, label="Frames")
                height = gr.Dropdown(SIDE_CHOICES, value=128, label="Height")
                width = gr.Dropdown(SIDE_CHOICES, value=128, label="Width")
            with gr.Row():
                start = backend.page_defaults()["generate"]
                steps = gr.Slider(
                    1, 50, value=start["steps"], step=1, label="Steps", elem_id="generate-steps"
                )
                guidance = guidance_slider(start["guidance"], "Guidance (CFG)", "generate-guidance")
                seed = gr.Number(0, precision=0, label="Seed", minimum=0)
            with gr.Row():
                run = gr.Button("Generate", variant="primary", elem_id="generate-run")
                stop = gr.Button("Cancel")
        with gr.Column(scale=1):
            status, result, files = _result_column("generate", "Video")
    job = gr.State(None)

    def on_run(
        prompt_text: str,
        negative_text: str,
        image_path: str | None,
        num_frames: int,
        h: int,
        w: int,
        steps_value: float,
        guidance_value: float,
        seed_value: float | None,
        request: gr.Request,
        progress: gr.Progress = gr.Progress(),
    ) -> Iterator[Outputs]:
        def build(folder: Path) -> dict[str, Any]:
            data: dict[str, Any] = {
                "kind": "generate",
                "prompt": prompt_text,
                "negative_prompt": negative_text or "",
                "num_frames": int(num_frames),
                "height": int(h),
                "width": int(w),
                "steps": int(steps_value),
                "guidance_scale": float(guidance_value),
                "seed": int(seed_value or 0),
            }
            if image_path:
                data["image"] = str(backend.keep_upload(image_path, folder, "image"))
            return data

        job_id, said = submit_or_say(backend, build, (gr.skip(), gr.skip(), None), request)
        if said is not None:
            yield said
            return
        yield from follow(backend, job_id, progress, _video_finished(job_id), (gr.skip(), gr.skip(), job_id))

    inputs = [prompt, negative, image, frames, height, width, steps, guidance, seed]
    # no limit: each visitor follows their own job; the one worker runs them one after another
    run.click(on_run, inputs, [status, result, files, job], concurrency_limit=None)
    stop.click(lambda job_id: cancel(backend, job_id), job, status)


def avatar_tab(backend: StudioBackend) -> None:
    """Lay out the avatar tab inside the current ``gr.Tab`` and wire its events."""
    with gr.Row():
        with gr.Column(scale=1):
            image = gr.Image(label="Reference image (a face)", type="filepath", height=220)
            audio = gr.Audio(label="Speech", type="filepath", sources=["upload"])
            use_example = gr.Button("Use a FaceWorld example")
            with gr.Row():
                steps = gr.Slider(0, 20, value=0, step=1, label="Steps per chunk (0: the checkpoint's)")
                seed = gr.Number(0, precision=0, label="Seed", minimum=0)
            with gr.Row():
                run = gr.Button("Make the video", variant="primary", elem_id="avatar-run")
                stop = gr.Button("Cancel")
        with gr.Column(scale=1):
            status, result, files = _result_column("avatar", "Talking head")
    job = gr.State(None)

    def on_example() -> tuple[str, str]:
        reference, speech = avatar_example(backend.upload_folder())
        return str(reference), str(speech)

    use_example.click(on_example, None, [image, audio])

    def on_run(
        image_path: str | None,
        audio_path: str | None,
        steps_value: float,
        seed_value: float | None,
        request: gr.Request,
        progress: gr.Progress = gr.Progress(),
    ) -> Iterator[Outputs]:
        def build(folder: Path) -> dict[str, Any]:
            given = (("reference image", image_path), ("speech", audio_path))
            missing = [name for name, value in given if not value]
            if missing:
                raise StudioInputError(
                    f"missing {' and '.join(missing)}: upload it or use the FaceWorld example"
                )
            data: dict[str, Any] = {
                "kind": "avatar",
                "image": str(backend.keep_upload(str(image_path), folder, "image")),
                "audio": str(backend.keep_upload(str(audio_path), folder, "audio")),
                "seed": int(seed_value or 0),
            }
            if steps_value:
                data["steps"] = int(steps_value)
            return data

        job_id, said = submit_or_say(backend, build, (gr.skip(), gr.skip(), None), request)
        if said is not None:
            yield said
            return
        yield from follow(backend, job_id, progress, _video_finished(job_id), (gr.skip(), gr.skip(), job_id))

    # no limit: each visitor follows their own job; the one worker runs them one after another
    run.click(on_run, [image, audio, steps, seed], [status, result, files, job], concurrency_limit=None)
    stop.click(lambda job_id: cancel(backend, job_id), job, status)


def _owner(request: gr.Request | None) -> str:
    """The page's logged-in token name (``""`` on an open server or the studio alone)."""
    return getattr(request, "username", None) or ""


def jobs_tab(backend: StudioBackend) -> Any:
    """Lay out the jobs tab inside the current ``gr.Tab`` and wire its events; returns the function
    that refreshes the table (for the tab's ``select`` event)."""
    gr.Markdown(
        "Your latest jobs, newest first (the same list as `GET /v1/jobs` with your token). "
        "A running job must be cancelled before it can be deleted; deleting removes its files."
    )
    with gr.Row():
        refresh = gr.Button("Refresh", elem_id="jobs-refresh", scale=0)
        job_id = gr.Textbox(label="Job id", placeholder="paste a job id from the table", elem_id="jobs-id")
        stop = gr.Button("Cancel job", elem_id="jobs-cancel", scale=0)
        remove = gr.Button("Delete job", variant="stop", elem_id="jobs-delete", scale=0)
    said = gr.Markdown("", elem_id="jobs-status")
    table = gr.Dataframe(
        headers=list(StudioBackend.COLUMNS),
        datatype=["str"] * len(StudioBackend.COLUMNS),
        interactive=False,
        wrap=True,
        elem_id="jobs-table",
    )

    def rows(request: gr.Request) -> list[list[str]]:
        return backend.recent(_owner(request))

    def on_cancel(chosen: str, request: gr.Request) -> tuple[str, list[list[str]]]:
        chosen = (chosen or "").strip()
        try:
            state = backend.cancel(chosen, owner=_owner(request))
            text = f"**Job `{chosen}`**: {state.describe()} (a running job stops at its next step)"
        except StudioInputError as error:
            text = str(error)
        return text, backend.recent(_owner(request))

    def on_delete(chosen: str, request: gr.Request) -> tuple[str, list[list[str]]]:
        chosen = (chosen or "").strip()
        try:
            backend.delete(chosen, owner=_owner(request))
            text = f"**Job `{chosen}`** deleted, with its files."
        except StudioInputError as error:
            text = str(error)
        return text, backend.recent(_owner(request))

    refresh.click(rows, None, table)
    stop.click(on_cancel, job_id, [said, table])
    remove.click(on_delete, job_id, [said, table])
    return rows, table
