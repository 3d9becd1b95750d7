"""Load YAML and remember the line of every value, so a config error can point at its line."""

from __future__ import annotations

from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

Path = tuple[str, ...]


class YamlProblem(ValueError):
    """The text is not YAML we accept; ``line`` is 1-based (None when unknown)."""

    def __init__(self, reason: str, line: int | None):
        super().__init__(reason)
        self.reason, self.line = reason, line


def load_with_lines(text: str) -> tuple[Any, dict[Path, int]]:
    """The document, and the 1-based line of each value by its path (keys and list indexes as text).

    Duplicate keys in a mapping are an error here (plain YAML silently keeps the last one,
    which would hide a second route or handler of the same name).
    """
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        reason = " ".join(str(p) for p in (getattr(exc, "context", None), getattr(exc, "problem", None)) if p)
        raise YamlProblem(f"not valid YAML: {reason or exc}", mark.line + 1 if mark else None) from None
    lines: dict[Path, int] = {}
    if root is not None:
        _walk(root, (), lines)
    return document, lines


def _walk(node: Node, path: Path, lines: dict[Path, int], line: int | None = None) -> None:
    # A mapping entry is placed at its key: a block mapping value starts on the line below it.
    lines[path] = line or node.start_mark.line + 1
    if isinstance(node, MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value) if isinstance(key_node, ScalarNode) else "?"
            if key in seen:
                raise YamlProblem(f"{key!r} appears twice", key_node.start_mark.line + 1)
            seen.add(key)
            _walk(value_node, path + (key,), lines, key_node.start_mark.line + 1)
    elif isinstance(node, SequenceNode):
        for index, item in enumerate(node.value):
            _walk(item, path + (str(index),), lines)


def line_of(lines: dict[Path, int], location: tuple) -> int | None:
    """The line of the deepest part of ``location`` that is in the document.

    Parts that are not in the document are skipped rather than ending the walk: pydantic puts
    the tag of a discriminated union into its error locations (``handlers.x.webhook.url``).
    """
    path: Path = ()
    for part in location:
        if path + (str(part),) in lines:
            path += (str(part),)
    return lines.get(path)
