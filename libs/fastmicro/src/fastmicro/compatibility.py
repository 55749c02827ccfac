"""Would a new schema of an event version break a reader of it? The gate of libs/contracts/schemas/.

A published (type, version) keeps its shape: its readers are services already deployed, messages
already queued, dead letters waiting for a replay. `breaking_changes(old, new)` compares the
committed JSON Schema of a version with the one its class gives now, and names each change a reader
of the old one would not survive:

- `field removed or renamed`: a property the old schema had is gone (a reader still wants it);
- `required field added`: a property is required that was not (old messages lack it);
- `field no longer required`: a reader of the old schema requires what may now be missing;
- `type narrowed`: fewer values are accepted (a type or a null left out, a bound tightened, a pattern,
  format or const added or changed): old messages may now be refused;
- `type widened`: more values are accepted (a bound loosened): a reader of the old schema, which
  checks its producer's bounds at parsing, refuses the new ones;
- `enum value removed` (old messages may carry it) and `enum value added` (old readers refuse it).

Adding an optional property, or changing a title or description, breaks nobody. A new
incompatible shape is a new class with the next `version`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: Bounds whose larger value accepts more, and whose smaller value accepts more.
_UPPER = ("maxLength", "maximum", "exclusiveMaximum", "maxItems", "maxProperties")
_LOWER = ("minLength", "minimum", "exclusiveMinimum", "minItems", "minProperties")
_EXACT = ("pattern", "format", "const", "multipleOf")


@dataclass(frozen=True)
class Break:
    """One change that breaks a reader: the rule, and where in the message (`data.items[].sku`)."""

    rule: str
    path: str
    detail: str

    def __str__(self) -> str:
        return f"{self.rule} at {self.path}: {self.detail}"


def breaking_changes(old: dict[str, Any], new: dict[str, Any]) -> list[Break]:
    """Every change from `old` to `new` (self-contained schemas, `$ref`s into `$defs`) that breaks a reader."""
    found: list[Break] = []
    _Comparison(_Resolver(old), _Resolver(new), found).compare(old, new, "")
    return found


class _Resolver:
    def __init__(self, root: dict[str, Any]) -> None:
        self.root = root

    def __call__(self, schema: dict[str, Any]) -> dict[str, Any]:
        seen = 0
        while "$ref" in schema and seen < 32:
            target: Any = self.root
            for part in schema["$ref"].removeprefix("#/").split("/"):
                target = target[part.replace("~1", "/").replace("~0", "~")]
            schema = target
            seen += 1
        return schema


def _types(schema: dict[str, Any], resolve: _Resolver) -> set[str] | None:
    """The JSON types a schema allows (None: any), reading `anyOf` of alternatives too."""
    schema = resolve(schema)
    if "anyOf" in schema or "oneOf" in schema:
        allowed: set[str] = set()
        for branch in schema.get("anyOf", schema.get("oneOf", [])):
            branch_types = _types(branch, resolve)
            if branch_types is None:
                return None
            allowed |= branch_types
        return allowed
    kind = schema.get("type")
    if kind is None:
        return None
    return {kind} if isinstance(kind, str) else set(kind)


def _main_branch(schema: dict[str, Any], resolve: _Resolver) -> dict[str, Any]:
    """The non-null alternative of `X | None`, or the schema itself."""
    schema = resolve(schema)
    branches = [b for b in schema.get("anyOf", []) if resolve(b).get("type") != "null"]
    return resolve(branches[0]) if len(branches) == 1 else schema


@dataclass
class _Comparison:
    old_resolve: _Resolver
    new_resolve: _Resolver
    found: list[Break]
    seen: set[tuple[int, int]] = field(default_factory=set)

    def compare(self, old: dict[str, Any], new: dict[str, Any], path: str) -> None:
        marker = (id(old), id(new))
        if marker in self.seen:
            return
        self.seen.add(marker)
        found = self.found
        where = path or "(message)"
        old_types, new_types = _types(old, self.old_resolve), _types(new, self.new_resolve)
        if old_types is not None and (new_types is None or new_types - old_types):
            found.append(Break("type widened", where, f"{sorted(old_types)} -> {sorted(new_types or ['any'])}"))
        if new_types is not None and (old_types is None or not old_types <= new_types):
            lost = sorted((old_types or {"any"}) - new_types)
            found.append(
                Break("type narrowed", where, f"{sorted(old_types or ['any'])} -> {sorted(new_types)}: {lost}")
            )
        old_main, new_main = _main_branch(old, self.old_resolve), _main_branch(new, self.new_resolve)
        _bounds(old_main, new_main, where, found)
        _enums(old_main, new_main, where, found)
        old_props: dict[str, Any] = old_main.get("properties", {})
        new_props: dict[str, Any] = new_main.get("properties", {})
        old_required, new_required = set(old_main.get("required", [])), set(new_main.get("required", []))
        for name in sorted(old_props):
            child = f"{path}.{name}" if path else name
            if name not in new_props:
                found.append(Break("field removed or renamed", child, f"`{name}` is gone"))
                continue
            if name in old_required and name not in new_required:
                found.append(Break("field no longer required", child, f"`{name}` may now be missing"))
            self.compare(old_props[name], new_props[name], child)
        found.extend(
            Break(
                "required field added",
                f"{path}.{name}" if path else name,
                f"`{name}` is required: older messages lack it",
            )
            for name in sorted(new_required - old_required)
        )
        if "items" in old_main and "items" in new_main:
            self.compare(old_main["items"], new_main["items"], f"{path}[]")


def _bounds(old: dict[str, Any], new: dict[str, Any], where: str, found: list[Break]) -> None:
    for key in (*_UPPER, *_LOWER):
        before, after = old.get(key), new.get(key)
        if before == after:
            continue
        if before is None or (after is not None and ((after < before) if key in _UPPER else (after > before))):
            found.append(Break("type narrowed", where, f"{key} {before} -> {after}"))
        else:
            found.append(Break("type widened", where, f"{key} {before} -> {after}"))
    for key in _EXACT:
        if old.get(key) != new.get(key):
            rule = "type widened" if key in old and key not in new else "type narrowed"
            found.append(Break(rule, where, f"{key} {old.get(key)!r} -> {new.get(key)!r}"))


def _enums(old: dict[str, Any], new: dict[str, Any], where: str, found: list[Break]) -> None:
    before, after = old.get("enum"), new.get("enum")
    if before is None and after is None:
        return
    if before is not None and after is not None:
        found.extend(Break("enum value removed", where, f"{value!r}") for value in before if value not in after)
        found.extend(
            Break("enum value added", where, f"{value!r}: readers of this version refuse it")
            for value in after
            if value not in before
        )
    elif after is not None:
        found.append(Break("type narrowed", where, f"now one of {after!r}"))
    else:
        found.append(Break("type widened", where, f"no longer one of {before!r}"))
