"""Strict YAML reading for operator-owned files (routing, schedules): every error names its line.

Files are read through PyYAML's node API: plain ``yaml.safe_load`` forgets where values came
from and silently keeps the last of two duplicate keys.
"""

from __future__ import annotations

import os
from typing import Any

import yaml

from rabbitq.errors import ConfigFileError


def read_text(path: str | os.PathLike[str], error: type[ConfigFileError]) -> tuple[str, str]:
    """The file's text and its name for messages; an unreadable file raises ``error``."""
    source = os.fspath(path)
    try:
        with open(source, encoding="utf-8") as handle:
            return handle.read(), source
    except OSError as exc:
        raise error(f"cannot read file: {exc.strerror}", source=source) from None


def compose(text: str, source: str, error: type[ConfigFileError]) -> yaml.Node | None:
    """The document's root node, or None for an empty document."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        raise error(f"invalid YAML: {exc.problem or exc}", source=source, line=line) from None
    except yaml.YAMLError as exc:
        raise error(f"invalid YAML: {exc}", source=source) from None
    if root is None or is_null(root):
        return None
    return root


def is_null(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag.endswith(":null")


def line_of(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def shown(node: yaml.Node) -> str:
    if isinstance(node, yaml.ScalarNode):
        return repr(node.value)
    return "a list" if isinstance(node, yaml.SequenceNode) else "a mapping"


class NodeReader:
    """Typed accessors over YAML nodes that raise ``error`` with the node's line."""

    def __init__(self, source: str, error: type[ConfigFileError]) -> None:
        self.source = source
        self.error = error

    def fail(self, node: yaml.Node, problem: str) -> ConfigFileError:
        return self.error(problem, source=self.source, line=line_of(node))

    def mapping(
        self, node: yaml.Node, what: str, allowed: tuple[str, ...] | None
    ) -> list[tuple[yaml.ScalarNode, yaml.Node]]:
        if is_null(node):
            return []
        if not isinstance(node, yaml.MappingNode):
            raise self.fail(node, f"{what} must be a mapping")
        seen: dict[str, int] = {}
        pairs: list[tuple[yaml.ScalarNode, yaml.Node]] = []
        for key, value in node.value:
            if not isinstance(key, yaml.ScalarNode) or not key.tag.endswith(":str"):
                raise self.fail(key, f"keys in {what} must be strings")
            if key.value in seen:
                raise self.fail(
                    key, f"duplicate key {key.value!r} in {what} (first on line {seen[key.value]})"
                )
            seen[key.value] = line_of(key)
            if allowed is not None and key.value not in allowed:
                raise self.fail(
                    key,
                    f"unknown key {key.value!r} in {what}; expected one of: {', '.join(allowed)}",
                )
            pairs.append((key, value))
        return pairs

    def string(self, node: yaml.Node, what: str) -> str:
        if not isinstance(node, yaml.ScalarNode) or not node.tag.endswith(":str"):
            raise self.fail(node, f"{what} must be a string, got {shown(node)}")
        return str(node.value)

    def choice(self, node: yaml.Node, what: str, choices: tuple[str, ...]) -> str:
        value = self.string(node, what)
        if value not in choices:
            raise self.fail(node, f"{what} must be one of {', '.join(choices)}; got {value!r}")
        return value

    def integer(self, node: yaml.Node, what: str, minimum: int, maximum: int | None = None) -> int:
        if not isinstance(node, yaml.ScalarNode) or not node.tag.endswith(":int"):
            kind = "a positive integer" if minimum > 0 else "a non-negative integer"
            raise self.fail(node, f"{what} must be {kind}, got {shown(node)}")
        value = int(yaml.safe_load(node.value))
        if value < minimum or (maximum is not None and value > maximum):
            bounds = f"{minimum}..{maximum}" if maximum is not None else f">= {minimum}"
            raise self.fail(node, f"{what} must be {bounds}, got {value}")
        return value

    def number(self, node: yaml.Node, what: str) -> float | None:
        """An int or float scalar as a float; None if the node is not a number."""
        if isinstance(node, yaml.ScalarNode) and node.tag.endswith((":int", ":float")):
            return float(yaml.safe_load(node.value))
        return None

    def boolean(self, node: yaml.Node, what: str) -> bool:
        if not isinstance(node, yaml.ScalarNode) or not node.tag.endswith(":bool"):
            raise self.fail(node, f"{what} must be true or false, got {shown(node)}")
        return bool(yaml.safe_load(node.value))

    def plain(self, node: yaml.Node) -> Any:
        """The node as plain Python data (lists, dicts, scalars), as ``safe_load`` builds it."""
        return yaml.safe_load(yaml.serialize(node))
