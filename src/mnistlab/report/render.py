"""REPORT.md, report.html (self-contained: figures inlined as data URIs) and report.json.

Both documents come from the same blocks (``document.build``) through Jinja2 templates in
``templates/``; report.json is the numbers they were built from (``Report.to_dict()``).
"""

from __future__ import annotations

import base64
import math
import re
from pathlib import Path

import jinja2
from markupsafe import Markup, escape

from mnistlab import atomic
from mnistlab.report import document
from mnistlab.report.blocks import Document
from mnistlab.report.record import Json
from mnistlab.report.schema import Report

_CODE = re.compile(r"`([^`]+)`")


def _env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("mnistlab.report", "templates"),
        autoescape=jinja2.select_autoescape(["html", "html.j2"]),
        trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined)
    env.filters["inline"] = _inline_html
    env.filters["cell"] = _md_cell
    return env


def _inline_html(text: str) -> Markup:
    """Escape, then turn `code` spans into <code> elements."""
    return Markup(_CODE.sub(lambda m: f"<code>{m.group(1)}</code>", str(escape(text))))


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render_markdown(doc: Document) -> str:
    return _env().get_template("report.md.j2").render(doc=doc)


def render_html(doc: Document, folder: Path) -> str:
    """HTML with every figure read from ``folder`` and embedded, so the page needs no files
    and makes no requests."""
    images = {}
    for block in doc.figures():
        data = (Path(folder) / block.path).read_bytes()
        images[block.name] = "data:image/png;base64," + base64.b64encode(data).decode()
    return _env().get_template("report.html.j2").render(doc=doc, images=images)


def jsonable(value: object) -> Json:
    """NaN and infinities become null (JSON has no such numbers); tuples become lists."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if hasattr(value, "item"):  # numpy scalars
        return jsonable(value.item())
    return value


FILES = ("REPORT.md", "report.html", "report.json")     # what write_all writes


def write_json(report: Report, out: Path) -> None:
    atomic.write_json(Path(out) / "report.json", jsonable(report.to_dict()))


def write_all(report: Report, out: Path) -> None:
    out = Path(out)
    doc = document.build(report)
    atomic.write_text(out / FILES[0], render_markdown(doc))
    atomic.write_text(out / FILES[1], render_html(doc, out))
    write_json(report, out)
