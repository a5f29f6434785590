"""What both pages share: relative links, number cells, the page shell with its inline CSS and JS.

The pages must open from disk with no network (a run's outputs are files; a CDN would break
offline and change under us), so every link is relative to the page and every style and script
is inline. Two scripts ride along: column sorting for `table.sortable`, and a probe that only
runs with `?selftest` in the URL, for the browser test: it waits until every audio element
has loaded its metadata (or failed), then writes a JSON summary (durations, failed sources,
broken images, sorting checks, window errors and console.error calls) into `<pre id=selftest>`.
"""

from __future__ import annotations

import html
import math
import os
from pathlib import Path
from urllib.parse import quote

from ..metrics.registry import keys, label

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


def num_cell(value, tag: str = "td") -> str:
    """A cell the sort script reads through `data-v` (empty: sorts last)."""
    v = number(value)
    return f'<{tag} class="n" data-v="{"" if v is None else repr(v)}">{fmt(value)}</{tag}>'


def audio(url: str, title: str) -> str:
    return f'<audio controls preload="metadata" src="{esc(url)}" title="{esc(title)}"></audio>'


def flags(names) -> str:
    names = list(names or [])
    if not names:
        return '<span class="noflag">no flags</span>'
    return " ".join(f'<span class="flag">{esc(f)}</span>' for f in names)


def metric_list(metrics: dict, keys: list[str]) -> str:
    """The keys of `keys` that `metrics` has, as a small definition list."""
    items = "".join(f"<dt>{esc(label(k))}</dt><dd>{fmt(metrics[k])}</dd>" for k in keys if k in metrics)
    return f'<dl class="m">{items}</dl>' if items else ""


CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:1.5rem;color:#1d1d1f;background:#fff}
h1{font-size:1.5rem;margin:0 0 .5rem}h2{font-size:1.2rem;margin:1.8rem 0 .6rem}h3{font-size:1rem;margin:1.2rem 0 .4rem}
table{border-collapse:collapse;margin:.4rem 0}th,td{border:1px solid #d8d8dc;padding:.35rem .5rem;vertical-align:top}
thead th{background:#f2f2f5;text-align:left;position:sticky;top:0;z-index:1}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
th[data-sort]{cursor:pointer;user-select:none}th[data-sort]:hover{background:#e4e4ea}
th[aria-sort=ascending]::after{content:" \\25B2"}th[aria-sort=descending]::after{content:" \\25BC"}
tbody th{text-align:left;white-space:nowrap}
tbody th.prompt{width:14rem;min-width:10rem;white-space:normal;font-weight:600;background:#fafafa}
audio{width:300px;height:36px;display:block}
img.spec{width:300px;height:80px;display:block;margin:.25rem 0;background:#000}
dl.m{display:grid;grid-template-columns:auto auto;gap:0 .8rem;font-size:12px;margin:.2rem 0;max-width:300px}
dl.m dt{color:#555}dl.m dd{margin:0;text-align:right;font-variant-numeric:tabular-nums}
.flag{display:inline-block;background:#fde2e1;color:#a40e0e;border-radius:3px;padding:0 .35em;font-size:12px}
.noflag{color:#777;font-size:12px}.ok{color:#137333}.bad{color:#b3261e}
.cards{display:flex;flex-wrap:wrap;gap:1rem;align-items:flex-start}
.card{border:1px solid #d8d8dc;border-radius:6px;padding:.6rem .9rem}
.card ul{margin:.2rem 0;padding-left:1.1rem}.muted{color:#666;font-size:12px}
svg text{font:11px system-ui,sans-serif;fill:#333}
"""

SORT_JS = """
(function () {
  function key(cell, numeric) {
    if (!cell) return null;
    if (numeric) { var v = parseFloat(cell.getAttribute("data-v")); return isNaN(v) ? null : v; }
    return cell.textContent.trim().toLowerCase();
  }
  document.querySelectorAll("table.sortable").forEach(function (table) {
    var heads = table.tHead.rows[0].cells;
    Array.prototype.forEach.call(heads, function (th, col) {
      if (!th.hasAttribute("data-sort")) return;
      var numeric = th.getAttribute("data-sort") === "num";
      th.tabIndex = 0;
      th.title = "sort by this column";
      function sort() {
        var asc = th.getAttribute("aria-sort") !== "ascending";
        Array.prototype.forEach.call(heads, function (h) { h.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", asc ? "ascending" : "descending");
        var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var x = key(a.cells[col], numeric), y = key(b.cells[col], numeric);
          if (x === null || y === null) return x === y ? 0 : (x === null ? 1 : -1);
          var c = numeric ? x - y : (x < y ? -1 : x > y ? 1 : 0);
          return asc ? c : -c;
        });
        rows.forEach(function (r) { body.appendChild(r); });
      }
      th.addEventListener("click", sort);
      th.addEventListener("keydown", function (e) { if (e.key === "Enter") sort(); });
    });
  });
})();
"""

SELFTEST_JS = """
(function () {
  if (!/[?&]selftest(=|&|$)/.test(location.search)) return;
  var errors = [];
  window.addEventListener("error", function (e) {
    var t = e.target;
    errors.push(t && t !== window ? "load error: " + (t.currentSrc || t.src || t.tagName) : "error: " + e.message);
  }, true);
  window.addEventListener("unhandledrejection", function (e) { errors.push("rejection: " + e.reason); });
  var original = console.error;
  console.error = function () {
    errors.push("console.error: " + Array.prototype.join.call(arguments, " "));
    return original.apply(console, arguments);
  };
  function sortChecks() {
    var bad = [], checked = 0;
    document.querySelectorAll("table.sortable").forEach(function (table) {
      Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, col) {
        if (th.getAttribute("data-sort") !== "num") return;
        [1, -1].forEach(function (dir) {
          th.click();
          var v = Array.prototype.map.call(table.tBodies[0].rows, function (r) {
            return parseFloat(r.cells[col].getAttribute("data-v"));
          }).filter(function (x) { return !isNaN(x); });
          for (var i = 1; i < v.length; i++) if (dir * (v[i] - v[i - 1]) < 0) { bad.push(th.textContent); break; }
          checked++;
        });
      });
    });
    return {checked: checked, unsorted: bad};
  }
  window.addEventListener("load", function () {
    var audios = Array.prototype.slice.call(document.querySelectorAll("audio"));
    var waits = audios.map(function (a) {
      return new Promise(function (done) {
        if (a.readyState >= 1 || a.error) return done();
        a.addEventListener("loadedmetadata", done);
        a.addEventListener("error", done);
      });
    });
    Promise.race([Promise.all(waits), new Promise(function (r) { setTimeout(r, 8000); })]).then(function () {
      var images = Array.prototype.slice.call(document.querySelectorAll("img"));
      var out = {
        audio: audios.length,
        loaded: audios.filter(function (a) { return a.readyState >= 1 && a.duration > 0; }).length,
        durations: audios.map(function (a) { return isFinite(a.duration) ? a.duration : null; }),
        failed: audios.filter(function (a) { return !(a.duration > 0); })
          .map(function (a) { return a.getAttribute("src"); }),
        images: images.length,
        broken_images: images.filter(function (i) { return !(i.complete && i.naturalWidth > 0); })
          .map(function (i) { return i.getAttribute("src"); }),
        sort: sortChecks(),
        errors: errors
      };
      var pre = document.createElement("pre");
      pre.id = "selftest";
      pre.textContent = JSON.stringify(out);
      document.body.appendChild(pre);
    });
  });
})();
"""


def document(title: str, body: str) -> str:
    """A complete page: the probe first (so it sees every later error), the sorter last."""
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n<title>{esc(title)}</title>\n'
            f"<script>{SELFTEST_JS}</script>\n<style>{CSS}</style>\n</head>\n<body>\n{body}\n"
            f"<script>{SORT_JS}</script>\n</body>\n</html>\n")
