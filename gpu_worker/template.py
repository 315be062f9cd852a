"""Job templates: ``{{name}}`` placeholders in any string of a job, filled from its ``merge``.

Filling works on the decoded JSON, string by string, before the job is validated: a value is
inserted as plain text (never parsed as JSON, never filled again, and it may not hold a
placeholder itself), so quotes or backslashes in it cannot change the job's shape. Keys are
never filled, nor is ``merge`` itself. A placeholder with no value in ``merge`` is an error
listing every missing name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

# {{name}} or {{ name }}; a name is a letter or _ then letters, digits, _ . or -
PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_.-]{0,63})\s*\}\}")
MERGE_KEY = "merge"
MAX_VALUE_CHARS = 5000


@dataclass
class Filled:
    """A job with its placeholders filled, and each string whose names had no value."""

    data: Any
    missing: dict[str, list[str]] = field(default_factory=dict)  # JSON path -> names

    def problems(self) -> list[str]:
        """One line per string with unfilled placeholders: ``$.path: no merge value for …``."""
        return [
            f"{path}: no merge value for " + ", ".join(f"{{{{{name}}}}}" for name in names)
            for path, names in self.missing.items()
        ]

    @property
    def names(self) -> list[str]:
        """Every missing name, each once, in the order first met."""
        seen: dict[str, None] = {}
        for names in self.missing.values():
            seen.update(dict.fromkeys(names))
        return list(seen)


def _merge_values(data: Any) -> tuple[dict[str, str], list[str]]:
    """The job's ``merge`` as text values, and what is wrong with it (JSON-path lines)."""
    if not isinstance(data, dict) or MERGE_KEY not in data:
        return {}, []
    merge = data[MERGE_KEY]
    if not isinstance(merge, dict):
        return {}, [f"$.{MERGE_KEY}: must be an object of names to text values"]
    values: dict[str, str] = {}
    errors: list[str] = []
    for name, value in merge.items():
        path = f"$.{MERGE_KEY}.{name}"
        if not PLACEHOLDER.fullmatch(f"{{{{{name}}}}}"):
            errors.append(f"{path}: not a name (a letter or _, then letters, digits, _ . -)")
        elif isinstance(value, bool) or not isinstance(value, str | int | float):
            errors.append(f"{path}: must be a string or a number")
        elif isinstance(value, str) and len(value) > MAX_VALUE_CHARS:
            errors.append(f"{path}: {len(value)} characters; at most {MAX_VALUE_CHARS}")
        elif isinstance(value, str) and PLACEHOLDER.search(value):
            errors.append(f"{path}: a value cannot itself hold a {{{{placeholder}}}}")
        else:
            values[name] = value if isinstance(value, str) else repr(value)
    return values, errors


def _fill(value: Any, path: str, values: dict[str, str], missing: dict[str, list[str]]) -> Any:
    if isinstance(value, str):
        names = [m.group(1) for m in PLACEHOLDER.finditer(value)]
        if not names:
            return value
        absent = [n for n in dict.fromkeys(names) if n not in values]
        if absent:
            missing[path] = absent
            return value
        return PLACEHOLDER.sub(lambda m: values[m.group(1)], value)
    if isinstance(value, dict):
        return {k: _fill(v, f"{path}.{k}", values, missing) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, f"{path}[{i}]", values, missing) for i, v in enumerate(value)]
    return value


def fill(data: Any) -> tuple[Filled, list[str]]:
    """``data`` with every placeholder filled from its own ``merge``; the second item lists
    what is wrong with ``merge`` itself (then nothing is filled)."""
    values, errors = _merge_values(data)
    if errors:
        return Filled(data), errors
    missing: dict[str, list[str]] = {}
    if isinstance(data, dict):
        filled = {
            k: v if k == MERGE_KEY else _fill(v, f"$.{k}", values, missing) for k, v in data.items()
        }
    else:
        filled = data
    return Filled(filled, missing), []


def with_merge(data: Any, merge: dict[str, Any] | None) -> Any:
    """The job ``data`` with ``merge`` values added to its own (``merge`` wins on a name)."""
    if not merge or not isinstance(data, dict):
        return data
    own = data.get(MERGE_KEY)
    combined = {**own, **merge} if isinstance(own, dict) else dict(merge)
    return {**data, MERGE_KEY: combined}
