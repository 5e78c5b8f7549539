"""The dashboard page at ``/``: an HTML shell, a stylesheet and a script, no build step.

The page carries no job data, so it is served without a token; its script
calls ``GET /jobs`` every two seconds with the API token kept in the browser's
localStorage (typed once in the page, or passed once as ``?token=`` which the
script removes from the address bar). The files are package data, read once.
"""

from __future__ import annotations

from functools import lru_cache
from html import escape
from importlib import resources
from string import Template

from substra_worker import __version__
from substra_worker.jobs import JobState

STATIC_TYPES = {
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
}
# the page's own files only: no inline script, no third-party origin
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


def _read(*parts: str) -> bytes:
    return resources.files("substra_worker.api").joinpath(*parts).read_bytes()


@lru_cache(maxsize=1)
def page() -> bytes:
    """The dashboard HTML."""
    states = [s.value for s in JobState]
    chips = "\n".join(
        f'  <button type="button" class="chip s-{s}" data-state="{s}">'
        f'<span class="n">0</span><span class="muted">{s}</span></button>'
        for s in states
    )
    options = "\n".join(f'    <option value="{s}">{s}</option>' for s in states)
    template = Template(_read("templates", "dashboard.html").decode("utf-8"))
    html = template.substitute(
        version=escape(__version__), count_chips=chips, state_options=options
    )
    return html.encode("utf-8")


def static_file(name: str) -> tuple[bytes, str] | None:
    """``(content, mimetype)`` of a dashboard asset, or None for any other name."""
    mimetype = STATIC_TYPES.get(name)
    if mimetype is None:
        return None
    return _static(name), mimetype


@lru_cache(maxsize=len(STATIC_TYPES))
def _static(name: str) -> bytes:
    return _read("static", name)
