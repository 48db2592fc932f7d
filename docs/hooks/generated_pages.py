"""MkDocs hook: pages generated from the code at build time.

``<!-- trial-spec-schema -->`` becomes the trial-spec reference (from the pydantic JSON schema of
:class:`bonecast.simulation.trials.TrialSpec`) and ``<!-- parameter-table SECTION -->`` the
packaged parameters whose source cites that section, with value, unit and source.
"""

from __future__ import annotations

import re
from typing import Any

from bonecast.simulation.parameters import default_parameter_set
from bonecast.simulation.trials import TrialSpec


def _type(schema: dict[str, Any], defs: dict[str, Any]) -> str:
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return f"[{name}](#{name.lower()})"
    if "anyOf" in schema:
        return " or ".join(_type(s, defs) for s in schema["anyOf"])
    if "enum" in schema:
        return "one of " + ", ".join(f"`{v}`" for v in schema["enum"])
    if "const" in schema:
        return f"`{schema['const']}`"
    kind = schema.get("type", "any")
    if kind == "array":
        items = schema.get("prefixItems") or [schema.get("items", {})]
        return "list of " + ", ".join(_type(i, defs) for i in items)
    if kind == "object" and "additionalProperties" in schema:
        return "mapping to " + _type(schema["additionalProperties"], defs)
    return str(kind)


def _bounds(schema: dict[str, Any]) -> str:
    words = {
        "minimum": ">=",
        "exclusiveMinimum": ">",
        "maximum": "<=",
        "exclusiveMaximum": "<",
        "minLength": "length >=",
    }
    parts = [f"{w} {schema[k]}" for k, w in words.items() if k in schema]
    for option in schema.get("anyOf", []):
        parts += [f"{w} {option[k]}" for k, w in words.items() if k in option]
    return ", ".join(parts)


def _prose(docstring: str) -> str:
    """A docstring as Markdown: Sphinx roles and double backquotes become code spans."""
    text = re.sub(r":\w+:`~?([^`]+)`", r"`\1`", docstring.strip())
    return text.replace("``", "`")


def _object(name: str, schema: dict[str, Any], defs: dict[str, Any]) -> str:
    lines = [f"### {name}", "", _prose(schema.get("description") or ""), ""]
    required = set(schema.get("required", []))
    lines += ["| field | type | required | accepted | default |", "|---|---|---|---|---|"]
    for field, spec in schema.get("properties", {}).items():
        default = spec.get("default", "")
        lines.append(
            f"| `{field}` | {_type(spec, defs)} | {'yes' if field in required else 'no'} | "
            f"{_bounds(spec)} | {'' if default == '' else f'`{default}`'} |"
        )
    return "\n".join(lines) + "\n"


def trial_spec_reference() -> str:
    """Markdown tables of every object of the trial spec (top level first)."""
    schema = TrialSpec.model_json_schema()
    defs = schema.pop("$defs", {})
    parts = [_object("TrialSpec", schema, defs)]
    parts += [_object(name, spec, defs) for name, spec in sorted(defs.items())]
    return "\n".join(parts).replace("\n\n\n", "\n\n")


def parameter_table(section: str) -> str:
    """The packaged parameters whose source names ``section`` (e.g. ``7.1``; ``all``: every one)."""
    params = default_parameter_set()
    pattern = re.compile(rf"(model\.md|section) {re.escape(section)}\b")
    rows = ["| name | symbol | value | unit | description | source |", "|---|---|---|---|---|---|"]
    for name, p in params.parameters.items():
        if section == "all" or pattern.search(p.source):
            description = " ".join(p.description.split())
            rows.append(
                f"| `{name}` | {p.symbol or ''} | {p.value:g} | {p.unit} | {description} | "
                f"{p.source} |"
            )
    return "\n".join(rows) + "\n"


def on_page_markdown(markdown: str, **_: Any) -> str:
    """Fill the generated blocks of a page."""
    markdown = markdown.replace("<!-- trial-spec-schema -->", trial_spec_reference())
    return re.sub(
        r"<!-- parameter-table ([0-9.]+|all) -->", lambda m: parameter_table(m.group(1)), markdown
    )
