"""The Gradio studio: four tabs over the same jobs the CLI runs (vcstudio/jobs, submitted
through the Studio); the tabs hold widgets and formatting only and import no pipelines."""

import os
import sys
from typing import Optional

CSS = (".vcs-banner {padding: 8px 12px; border-radius: 6px; background: #fff4d6; color: #5c4400}"
       # table headers wrap between words, never inside one ("metho d")
       " .vcs-table th, .vcs-table th * {word-break: normal !important;"
       " overflow-wrap: normal !important; hyphens: none !important}"
       # a figure fits its column (drawn ~640 px wide), never overflows it
       " .vcs-figure img {max-width: 100%; height: auto}")


def _model_notice() -> tuple[str, bool, str]:
    """(model id, is embedded, banner markdown): the studio's default base model and why --
    ``$VCSTUDIO_MODEL`` (``vcstudio app --model``) when set, else the machine's default
    (models/loading.py ``default_base``: SD 1.5 where its weights are cached or a GPU and the
    Hub are at hand, the embedded demo model otherwise)."""
    from ..errors import VcsError
    from ..models.loading import EMBEDDED_NOTICE, probed_default_base, resolve_model

    from ..models.catalog import resolve_alias

    env = resolve_alias(os.environ.get("VCSTUDIO_MODEL") or "") or None
    try:
        if env:
            (model, embedded), why = resolve_model(env), "set by VCSTUDIO_MODEL / --model"
        else:
            d = probed_default_base()
            model, embedded, why = d.model, d.embedded, d.why
    except VcsError as e:
        return "", False, f"⚠️ {e}"
    if embedded:
        return model, True, (f"ℹ️ **Offline demo model in use** ({why}). {EMBEDDED_NOTICE} "
                             "Each tab's *Base model* picker offers the others.")
    return model, False, (f"Base model: `{model}` ({why}). Each tab's *Base model* picker "
                          "offers the others.")


# a public studio forgets a visitor's files after this long idle (Gradio's cache and the
# session folders alike), so its disk use stays bounded; a desktop keeps everything
PUBLIC_TTL_S = float(os.environ.get("VCSTUDIO_PUBLIC_TTL_S", 3 * 3600))
PUBLIC_SWEEP_S = float(os.environ.get("VCSTUDIO_PUBLIC_SWEEP_S", 600))


def build_app(studio=None):
    """Build the Blocks. ``studio`` (a vcstudio.session.Studio) defaults to the process one.
    Its named endpoints are listed in API.md."""
    import gradio as gr

    from ..jobs import default_studio
    from . import compare_tab, edit_tab, i2v_tab, long_tab
    from .common import QUEUE_MAX, cancel_client_jobs, ensure_jobs, open_session, upload_guard

    studio = studio or default_studio()
    ensure_jobs(studio)
    model, embedded, banner = _model_notice()
    studio.model, studio.embedded = model, embedded  # what the tabs tune on
    ttl = (int(PUBLIC_SWEEP_S), int(PUBLIC_TTL_S)) if studio.public else None
    with gr.Blocks(title="vcstudio", delete_cache=ttl) as demo:
        gr.Markdown("# vcstudio — temporally consistent video editing")
        gr.Markdown(banner, elem_classes=["vcs-banner"])
        # a hidden textbox rather than gr.State, so API clients can carry their session too;
        # it holds only the session's random secret, never paths or tensors. The browser keeps
        # the secret in its own storage, so every tab of it opens the same session (and its
        # runs); nobody else is ever handed it.
        sid = gr.Textbox(value="", visible=False, label="Session")
        kept = gr.BrowserState("", storage_key="vcstudio-session",
                               secret=studio.account_secret("browser-state"))
        refs = edit_tab.build(studio, sid)
        long_tab.build(studio, sid, refs)
        i2v_tab.build(studio, sid, refs)
        compare_tab.build(studio, sid, refs)

        def start_session(saved: str, request: gr.Request) -> tuple[str, str]:
            """This browser's session: its signed-in account's, else the one its storage
            kept (any tab opened before), else a new one."""
            secret = open_session(studio, saved, request)
            return secret, secret

        def leave(request: gr.Request) -> None:
            """The tab closed (or an API client went away): its jobs stop, freeing the
            device; its files stay until the TTL (public) or for good (desktop)."""
            cancel_client_jobs(studio, request)

        demo.load(start_session, kept, [sid, kept], api_name=False)
        demo.unload(leave)
    upload_guard(studio).install(demo)
    if studio.public:
        from .visitor_state import drop_idle_states

        studio.start_cleanup(PUBLIC_SWEEP_S, PUBLIC_TTL_S,
                             also=[lambda age: drop_idle_states(demo, age)])
    demo.queue(default_concurrency_limit=4, max_size=QUEUE_MAX)
    return demo


def served_paths(studio) -> list[str]:
    """The folders Gradio's file route may serve beside its own cache. A desktop studio: its
    data folder (its one user's runs). A public studio: none -- its store, every visitor's
    session folder, the uploads, deltas, calibration and its key stay unreachable by any URL;
    what a visitor is handed is copied into the cache (ui.common.served)."""
    return [] if studio.public else [str(studio.data_dir.resolve())]


def launch(host: Optional[str] = None, port: Optional[int] = None, share: bool = False,
           studio=None, **kw):
    """Start the studio. A desktop studio serves files from its data folder to its one user
    (the default data folder is the platform user-data dir, which Gradio does not serve unless
    it is named in ``allowed_paths``). A public studio (SPACE_ID set) serves only Gradio's own
    cache: no URL reaches its data folder (the store, sessions, uploads, deltas); what a
    visitor is handed is copied into the cache first (ui.common.served)."""
    from ..jobs import default_studio

    studio = studio or default_studio()
    demo = build_app(studio)
    if studio.embedded:  # say it where the newcomer typed the command, too
        from ..models.loading import EMBEDDED_NOTICE

        print(f"vcstudio: offline demo model in use. {EMBEDDED_NOTICE}", file=sys.stderr)
    host = host or os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1")
    port = port or int(os.environ.get("PORT", os.environ.get("GRADIO_SERVER_PORT", 7860)))
    from ..space import safe_limits
    from .visitor_state import capacity

    kw.setdefault("state_session_capacity", capacity(studio.public))
    try:
        return demo.launch(server_name=host, server_port=port, share=share, css=CSS,
                           allowed_paths=served_paths(studio),
                           max_file_size=f"{int(safe_limits().max_upload_mb)}mb", **kw)
    except OSError as e:
        if "port" not in str(e).lower():
            raise
        sys.exit(f"vcstudio: port {port} is taken (another studio running?). Start on another "
                 "one with PORT=7861 python app.py, or vcstudio app --port 7861.")
