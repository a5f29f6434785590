"""What both pages share: relative links, number formats, and the Jinja2 environment that renders
the page templates beside this file (`base.html.j2`, `page.html.j2`, `trials.html.j2`,
`macros.html.j2`) with `style.css` inlined.

The pages must open from disk with no network (a run's outputs are files; a CDN would break
offline and change under us), so every link is relative to the page and the stylesheet is read
into the page's `<style>` at render time. Templates autoescape every value they render; the
Python side only prepares the data (rows, URLs, numbers), the templates hold the HTML.
"""

from __future__ import annotations

import html
import math
import os
from pathlib import Path
from urllib.parse import quote

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup

from ..metrics.registry import keys, label

HERE = Path(__file__).resolve().parent  # the templates and the stylesheet
CLIP_KEYS = keys(cell=True)  # per-clip numbers worth a glance in a cell (a row's `metrics` may hold more, or fewer)


def esc(value) -> str:
    return html.escape(str(value), quote=True)


def href(target: Path, page: Path) -> str:
    """`target` as a URL relative to the page's folder. Paths are made absolute, not resolved:
    DVC may link outputs into its cache, and the link must name the workspace path."""
    rel = os.path.relpath(os.path.abspath(target), os.path.abspath(Path(page).parent))
    return quote(Path(rel).as_posix())


def number(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value) + 0.0  # -0.0 shows as 0


def fmt(value) -> str:
    v = number(value)
    return "\u2013" if v is None else f"{v:.4g}"


def sort_key(value) -> str:
    """A number cell's `data-v`, what the sort script reads (empty: sorts last)."""
    v = number(value)
    return "" if v is None else repr(v)


ENV = Environment(
    loader=FileSystemLoader(HERE),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)
ENV.filters.update(fmt=fmt, sort_key=sort_key, label=label)


def render(template: str, **context) -> str:
    """`template` (a file beside this module) rendered with `context` and the stylesheet."""
    css = Markup((HERE / "style.css").read_text(encoding="utf-8"))
    return ENV.get_template(template).render(css=css, **context)
