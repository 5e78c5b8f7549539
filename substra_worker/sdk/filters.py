"""The ``search=`` filter encoding of the Substra protocol, both ways.

A filter is a list such as ``["algo:name:ABC", "OR", "dataset:name:x"]``:
items are ``asset:field:value``, consecutive items are ANDed (joined with
``,``) and ``"OR"`` separates groups (``-OR-``). As the reference client does,
each value is URL-quoted twice, and the whole string once more; the result is
sent as the raw query so that requests does not re-encode it.
"""

from __future__ import annotations

from urllib.parse import quote, unquote

OR = "OR"
OR_TOKEN = "-OR-"


def _escape(item: str) -> str:
    if item == OR:
        return OR_TOKEN
    if not isinstance(item, str):
        raise ValueError(f"a filter item must be a string, not {item!r}")
    asset, field, *value = item.split(":")
    if not value:
        raise ValueError(f"a filter item must be 'asset:field:value', not {item!r}")
    return ":".join([asset, field, quote(quote(":".join(value)))])


def _join_groups(items: list[str]) -> str:
    groups: list[list[str]] = [[]]
    for item in items:
        if item == OR_TOKEN:
            groups.append([])
        else:
            groups[-1].append(item)
    return OR_TOKEN.join(",".join(group) for group in groups)


def search_value(filters: list[str]) -> str:
    """The ``search`` parameter as the node sees it once its query string is decoded."""
    if not isinstance(filters, list):
        raise ValueError("filters must be a list, e.g. ['algo:name:ABC', 'OR', 'algo:name:x']")
    return _join_groups([_escape(f) for f in filters])


def query_string(filters: list[str]) -> str:
    """The raw query string a client sends: ``search=<quoted search value>``."""
    return "search=" + quote(search_value(filters))


def parse_search(search: str | None) -> list[list[tuple[str, str, str]]]:
    """Groups of ``(asset, field, value)`` from a decoded ``search`` parameter.

    Raises ``ValueError`` naming the malformed item.
    """
    if not search:
        return []
    groups = []
    for group in search.split(OR_TOKEN):
        parsed = []
        for item in group.split(","):
            if not item:
                continue
            parts = [p for p in item.split(":") if p]
            if len(parts) != 3:
                raise ValueError(f"malformed filter {item!r}: expected 'asset:field:value'")
            asset, field, value = parts
            parsed.append((asset, field, unquote(unquote(value))))
        if parsed:
            groups.append(parsed)
    return groups
