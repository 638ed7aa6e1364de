"""``.. config-reference::``: tables of every configuration key, made from the pydantic models.

One table per section (``synth``, ``maps``, ``observe.imaging``, ...) with the key as written
with ``--set``, its type, default, unit and description, so the page can never drift from
the code. Units come from the key's suffix (``pixel_kpc``: kpc), the package's naming rule.
"""

from __future__ import annotations

import enum
import re
import types
import typing
from pathlib import Path

from docutils import nodes
from docutils.statemachine import StringList
from pydantic import BaseModel, SecretStr
from pydantic_core import PydanticUndefined
from sphinx.util.docutils import SphinxDirective

#: Key suffix -> unit. The configuration names every dimensional setting this way.
UNIT_SUFFIXES = {
    "kpc": "kpc", "mpc": "Mpc", "pc": "pc", "km": "km", "m": "m", "deg": "deg",
    "arcsec": "arcsec", "kms": "km/s", "mhz": "MHz", "ghz": "GHz", "hz": "Hz", "s": "s",
    "h": "h", "k": "K", "jy": "Jy", "ujy": "uJy", "mjy": "mJy", "gb": "GB",
}


def unit_of(key: str) -> str:
    """The unit named by the last part of a key's name, or an empty string."""
    suffix = key.rsplit(".", 1)[-1].rsplit("_", 1)
    return UNIT_SUFFIXES.get(suffix[-1].lower(), "") if len(suffix) == 2 else ""


def type_name(annotation) -> str:
    """A reader's spelling of a field type: ``float``, ``int or None``, ``one of a, b``."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return type_name(args[0])
    if origin is typing.Literal:
        return "one of " + ", ".join(str(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " or ".join("None" if a is type(None) else type_name(a) for a in args)
    if origin in (list, tuple, set):
        return f"list of {type_name(args[0])}" if args else "list"
    if origin is dict:
        return f"mapping of {type_name(args[0])} to {type_name(args[1])}"
    if annotation is SecretStr:
        return "secret string"
    if isinstance(annotation, type) and issubclass(annotation, Path):
        return "path"
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return "one of " + ", ".join(str(m.value) for m in annotation)
    return getattr(annotation, "__name__", str(annotation))


def default_text(field) -> str:
    if field.default_factory is not None:
        value = field.default_factory()
    elif field.default is PydanticUndefined:
        return "(required)"
    else:
        value = field.default
    if isinstance(value, SecretStr):
        return "(unset)" if not value.get_secret_value() else "***"
    if isinstance(value, BaseModel):
        return ""
    if isinstance(value, enum.Enum):
        value = value.value
    return "None" if value is None else str(value)


def _cell(text: str) -> str:
    return re.sub(r"\s+", " ", text).replace("|", "\\|") or " "


class ConfigReference(SphinxDirective):
    """Emit the tables (list-tables written as reStructuredText, then parsed)."""

    def run(self):
        from alchemy_obs.config import config_fields

        sections: dict[str, list] = {}
        for key, field, _ in config_fields():
            section = key.rsplit(".", 1)[0] if "." in key else "(top level)"
            sections.setdefault(section, []).append((key, field))
        lines: list[str] = []
        for section, rows in sections.items():
            lines += [f".. rubric:: ``{section}``", "", ".. list-table::", "   :header-rows: 1",
                      "   :widths: 22 14 12 7 45", "",
                      "   * - key", "     - type", "     - default", "     - unit",
                      "     - description"]
            for key, field in rows:
                lines += [f"   * - ``{key}``", f"     - {_cell(type_name(field.annotation))}",
                          f"     - ``{_cell(default_text(field))}``" if default_text(field) else "     - ",
                          f"     - {unit_of(key) or ' '}", f"     - {_cell(field.description or '')}"]
            lines.append("")
        container = nodes.section()
        container.document = self.state.document
        self.state.nested_parse(StringList(lines, source="config-reference"), self.content_offset,
                                container)
        return container.children


def setup(app):
    app.add_directive("config-reference", ConfigReference)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
