"""The studio page: a Gradio front end over the job API's store and worker (needs the ``studio`` extra).

Mounted at ``/ui`` by ``flowstudio serve`` (:func:`mount_studio`), or alone with ``flowstudio studio``
(:func:`launch_studio`, with a store and worker of its own). Four tabs: edit (a clip or a ShapeWorld
example, prompts, method and preset, a region painted on the first frame or a box, strengths, steps),
generate, avatar (image + speech -> video), and jobs (the visitor's recent jobs, refreshable; cancel
or delete one). Every tab submits a job request through
:class:`~flowstudio.serve.studio.backend.StudioBackend`, which checks it as ``POST /v1/jobs`` does and
queues it for the one worker: studio jobs are listed by ``GET /v1/jobs`` and no model runs in the page.
Bad input is named in the tab's status box, never shown as a traceback.

Modules: :mod:`~.backend` (submit / follow / cancel, request building; no gradio), :mod:`~.examples`
(ShapeWorld and FaceWorld inputs), :mod:`~.follow` (a job's progress in the page), :mod:`~.edit_tab`,
:mod:`~.tabs` (generate, avatar, jobs).
"""

from __future__ import annotations

from typing import Any

from flowstudio.serve.studio.backend import StudioBackend

#: Where ``flowstudio serve`` mounts the page.
STUDIO_PATH = "/ui"


def build_studio(backend: StudioBackend) -> Any:
    """The page's ``gr.Blocks`` over ``backend`` (not launched)."""
    import gradio as gr

    from flowstudio.serve.studio.edit_tab import edit_tab
    from flowstudio.serve.studio.tabs import avatar_tab, generate_tab, jobs_tab

    # analytics off: a server must not call out (and the test machines have no internet)
    with gr.Blocks(title="flowstudio studio", analytics_enabled=False) as studio:
        gr.Markdown(
            "## flowstudio studio\n"
            "Jobs run one after another on the server's model; each one is also listed by `GET /v1/jobs`."
        )
        note = backend.model_note()
        if note:
            gr.Markdown(note, elem_id="model-note")
        with gr.Tab("Edit", id="edit"):
            edit_tab(backend)
        with gr.Tab("Generate", id="generate"):
            generate_tab(backend)
        with gr.Tab("Avatar", id="avatar"):
            avatar_tab(backend)
        with gr.Tab("Jobs", id="jobs") as jobs:
            rows, table = jobs_tab(backend)
        jobs.select(rows, None, table)  # the list is read whenever the tab is opened
    return studio


def mount_studio(
    app: Any, backend: StudioBackend | None = None, path: str = STUDIO_PATH, max_queue: int | None = None
) -> Any:
    """Mount the page on the FastAPI ``app`` of :func:`~flowstudio.serve.app.create_app` at ``path``.

    ``backend``: default, the app's own store, worker, jobs' folder and bounds (``--max-queue``, and
    ``--max-per-token`` for each logged-in token name; ``max_queue`` overrides the first). Of the
    disk, only the jobs' folder (results and the studio's uploads) may be served. A server with tokens
    (``app.state.tokens``) asks for a login: the token's name and the token itself; the jobs are then
    that token's, listed by ``GET /v1/jobs`` with it. An open server's page is open too.
    """
    import gradio as gr

    backend = backend or StudioBackend.for_app(app, max_queue)
    tokens = getattr(app.state, "tokens", None)
    auth = None
    if tokens is not None and not tokens.open:

        def auth(username: str, password: str) -> bool:
            return tokens.owner(f"Bearer {password}") == username

    return gr.mount_gradio_app(
        app,
        build_studio(backend),
        path=path,
        allowed_paths=[str(backend.jobs_dir)],
        footer_links=[],
        auth=auth,
        auth_message="Log in with a token of this server: its name, and the token as the password.",
    )


def launch_studio(backend: StudioBackend, host: str = "127.0.0.1", port: int = 7860) -> None:
    """Serve the page alone (``flowstudio studio``) until interrupted."""
    build_studio(backend).launch(
        server_name=host, server_port=port, allowed_paths=[str(backend.jobs_dir)], footer_links=[]
    )


__all__ = ["STUDIO_PATH", "StudioBackend", "build_studio", "launch_studio", "mount_studio"]
