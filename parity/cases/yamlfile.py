"""YAML read with bounded work: the node tree is sized before any data is built from it.

Aliases make YAML a compression format: nine levels of `&x [*y, *y, ...]` in 342 bytes stand for billions of
nodes ("billion laughs"), and anything that walks the data (line numbers, the schema check) walks all of them.
The composed tree holds each aliased node once, so its expanded size can be counted in linear time before
anything expands; a document over the limit, or one that refers to itself, is refused.
"""

from __future__ import annotations

from typing import Any

import yaml

# libyaml's parser when PyYAML has it (ten times faster; the same safe constructor and the same marks)
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

# Far above any real case file or training config (a 1,000-sample suite is ~10,000 nodes), far below what
# exhausts memory or time when walked.
MAX_NODES = 200_000


class YamlTooLarge(ValueError):
    """A document whose aliases expand beyond MAX_NODES nodes, or refer to themselves."""


def parse(text: str, max_nodes: int = MAX_NODES) -> tuple[yaml.Node | None, Any]:
    """The document's node tree (for line numbers) and its data, from one parse; YamlTooLarge before
    expansion when aliases would make it bigger than `max_nodes`. yaml.YAMLError for bad syntax."""
    loader = _LOADER(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, None
        size = expanded_size(node, max_nodes)
        if size > max_nodes:
            raise YamlTooLarge(
                f"the document's aliases (*name) expand it to more than {max_nodes:,} YAML nodes, or make it "
                "contain itself"
            )
        try:
            return node, loader.construct_document(node)
        except (ValueError, OverflowError) as exc:
            # PyYAML's resolver takes `0b_`, `0x_` or `2001-02-30` for an int or a date, then cannot build it
            raise _unreadable(node, exc) from None
    finally:
        loader.dispose()


def _unreadable(root: yaml.Node, exc: Exception) -> yaml.constructor.ConstructorError:
    """A scalar PyYAML typed but cannot build, with its line (found by building each typed scalar alone)."""
    builder = yaml.constructor.SafeConstructor()
    stack, seen = [root], set()
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.ScalarNode):
            try:
                builder.construct_object(node)
            except (ValueError, OverflowError) as err:
                kind = node.tag.rsplit(":", 1)[-1]
                return yaml.constructor.ConstructorError(
                    None, None, f"{node.value!r} reads as a YAML {kind} that cannot be built ({err}); quote it to mean text",
                    node.start_mark,
                )
        stack.extend(_children(node))
    return yaml.constructor.ConstructorError(None, None, f"a value YAML cannot build ({exc})", None)


def load(text: str, max_nodes: int = MAX_NODES) -> Any:
    """Like yaml.safe_load, with the same bound as `parse`."""
    return parse(text, max_nodes)[1]


def expanded_size(root: yaml.Node, limit: int) -> int:
    """How many nodes the document has with every alias expanded, counted up to just past `limit`
    (each distinct node is visited once; a node that contains itself counts as unbounded)."""
    sizes: dict[int, int] = {}
    unbounded = limit + 1
    # iterative post-order walk: deep nesting must not hit Python's recursion limit here
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    open_nodes: set[int] = set()
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if key in sizes:
            continue
        children = _children(node)
        if not children_done:
            if key in open_nodes:
                continue
            open_nodes.add(key)
            stack.append((node, True))
            for child in children:
                if id(child) in open_nodes and id(child) not in sizes:
                    return unbounded  # a node that contains itself (`&a [*a]`)
                if id(child) not in sizes:
                    stack.append((child, False))
            continue
        open_nodes.discard(key)
        sizes[key] = min(unbounded, 1 + sum(sizes.get(id(child), 0) for child in children))
    return sizes[id(root)]


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []
