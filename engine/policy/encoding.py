"""What the engine sees of a facts document: typed slots under generated keys.

durable_rules compares across types ("90" > 80 as text, ``true`` equals
``"true"``), never matches a missing attribute with ``$neq``, flattens
nested objects into its property table (at most 252 per fact) and gives
``id`` and ``sid`` a meaning of their own. So the engine never sees a facts
document as it is. For each stage, the compiler asks a ``Layout`` for the
slots its rules need, and the layout writes, per evaluation, one flat fact
holding only those slots, each typed for one use:

- ``tag``: the kind of the value at a path: ``m`` missing or null, ``n``
  number, ``s`` string, ``T``/``F`` booleans, ``l`` non-empty list, ``e``
  empty list, ``o`` mapping, ``x`` anything else (NaN, infinities);
- ``low`` / ``high``: the number, or minus / plus infinity when the value is
  not a number, so that an ordering test holds or fails for non-numbers
  exactly as the operator says, in one comparison;
- ``text``: the string, or ``wire.NOT_A_STRING`` when it is not one;
- ``predicate``: the verdict of ``matches`` or ``contains``, computed with
  the operator table itself (the engine's regular expressions are unsound
  and it has no substring test);
- ``items``: a list of objects, one per item, holding the item's kind (``k``:
  ``o`` for a mapping) and the slots its ``any_item``/``all_items``
  conditions need.

Keys are short generated names whose 32-bit FNV hashes (the engine's
property identity) differ from each other and from ``id`` and ``sid``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from engine.policy import wire
from engine.policy.operators import SCALAR_PREDICATES, as_number

ITEM_PREFIX = "$i."
KIND_NAME = "k"
RESERVED = ("id", "sid", "$i", "$s", "$forward")


class Kind(StrEnum):
    TAG = "t"
    LOW = "l"
    HIGH = "h"
    TEXT = "s"
    PREDICATE = "p"
    ITEMS = "i"


def fnv1a(name: str) -> int:
    """The engine's identity of a property name (32-bit FNV-1a)."""
    value = 0x811C9DC5
    for byte in name.encode():
        value = ((value ^ byte) * 16777619) & 0xFFFFFFFF
    return value


@dataclass(frozen=True, slots=True)
class Slot:
    index: int
    name: str  # the key in the fact (or in each item object)
    ref: str  # how a rule names it: the key, or "$i." + key inside items
    kind: Kind
    path: str  # dotted; relative to the item inside an item scope
    op: str = ""  # the predicate's operator
    operand: Any = None  # the predicate's operand


@dataclass
class Scope:
    """The slots of the fact (``prefix`` "") or of one list's items ("$i.")."""

    prefix: str = ""
    slots: list[Slot] = field(default_factory=list)
    _keys: dict[tuple[str, Kind, str, Any], Slot] = field(default_factory=dict)
    _hashes: set[int] = field(default_factory=set)

    def __post_init__(self) -> None:
        self._hashes.update(fnv1a(name) for name in RESERVED)
        self._hashes.add(fnv1a(self.prefix + KIND_NAME))

    def slot(self, path: str, kind: Kind, op: str = "", operand: Any = None) -> Slot:
        key = (path, kind, op, _hashable(operand))
        found = self._keys.get(key)
        if found is None:
            found = self._new(path, kind, op, operand)
            self._keys[key] = found
        return found

    def _new(self, path: str, kind: Kind, op: str, operand: Any) -> Slot:
        name = f"{kind.value}{len(self.slots)}"
        while fnv1a(self.prefix + name) in self._hashes:
            name += "_"
        self._hashes.add(fnv1a(self.prefix + name))
        slot = Slot(len(self.slots), name, self.prefix + name, kind, path, op, operand)
        self.slots.append(slot)
        return slot


def _hashable(operand: Any) -> Any:
    # True == 1 == 1.0 for a dict, not for the operators: key by kind too.
    if isinstance(operand, bool):
        return ("bool", operand)
    number = as_number(operand)
    if number is not None:
        return ("number", number)
    if isinstance(operand, list | tuple):
        return ("list", tuple(_hashable(item) for item in operand))
    return (type(operand).__name__, operand)


def tag(value: Any) -> str:
    """The one-letter kind of a fact value."""
    if value is None:
        return "m"
    if isinstance(value, bool):
        return "T" if value else "F"
    if isinstance(value, str):
        return "s"
    if as_number(value) is not None:
        return "n"
    if isinstance(value, list):
        return "l" if value else "e"
    return "o" if isinstance(value, Mapping) else "x"


Writer = Callable[[Any], str | None]
"""Writes one slot's ``"key":value`` member for the value at its path."""


def _writer(slot: Slot, items: Scope | None) -> Writer:
    head = f'"{slot.name}":'
    if slot.kind is Kind.TAG:
        return lambda value: f'{head}"{tag(value)}"'
    if slot.kind is Kind.LOW:
        return lambda value: head + _number(value, wire.NEGATIVE_INFINITY)
    if slot.kind is Kind.HIGH:
        return lambda value: head + _number(value, wire.POSITIVE_INFINITY)
    if slot.kind is Kind.TEXT:
        return lambda value: head + _text(value)
    if slot.kind is Kind.PREDICATE:
        predicate, operand = SCALAR_PREDICATES[slot.op], slot.operand
        return lambda value: head + wire.boolean(predicate(value, operand))
    assert items is not None, "an items slot has an item scope"
    return _items_writer(head, items)


def _number(value: Any, otherwise: str) -> str:
    if value is None:
        return otherwise
    if type(value) is float:  # the common case, without the generic checks
        return wire.number(value) if math.isfinite(value) else otherwise
    number = as_number(value)
    return otherwise if number is None else wire.number(number)


def _text(value: Any) -> str:
    return wire.fact_string(value) if isinstance(value, str) else wire.NOT_A_STRING


def _items_writer(head: str, scope: Scope) -> Writer:
    reader = _reader(scope, {})

    def item(value: Any) -> str:
        if not _is_mapping(value):
            return '{"k":"x"}'
        found: list[str | None] = [None] * len(scope.slots)
        reader.read(value, found)
        return '{"k":"o",' + ",".join(m for m in found if m is not None) + "}"

    def write(value: Any) -> str | None:
        if not isinstance(value, list):
            return None  # absent: no item test can hold
        return head + "[" + ",".join(item(entry) for entry in value) + "]"

    return write


def _is_mapping(value: Any) -> bool:
    return type(value) is dict or isinstance(value, Mapping)


@dataclass
class _Node:
    """One key of the paths a scope reads, with the slots read at it.

    Reading walks the facts once along this tree, so paths that share a
    prefix (``snapshot.memory.percent``, ``snapshot.memory.limit_percent``)
    look the prefix up once; a missing or non-mapping step makes every
    path below it missing, as ``verdicts.lookup`` does.
    """

    writers: list[tuple[int, Writer]] = field(default_factory=list)
    children: dict[str, _Node] = field(default_factory=dict)
    absent: list[tuple[int, str | None]] = field(default_factory=list)

    def freeze(self) -> None:
        """Write, once, what every slot below holds when this value is missing."""
        for child in self.children.values():
            child.freeze()
        self.absent = [(index, write(None)) for index, write in self.writers]
        for child in self.children.values():
            self.absent.extend(child.absent)

    def read(self, value: Any, found: list[str | None]) -> None:
        if value is None:
            for index, member in self.absent:
                found[index] = member
            return
        for index, write in self.writers:
            found[index] = write(value)
        mapping = value if _is_mapping(value) else {}
        for key, child in self.children.items():
            child.read(mapping.get(key), found)


def _reader(scope: Scope, items: Mapping[str, Scope]) -> _Node:
    root = _Node()
    for slot in scope.slots:
        node = root
        for key in slot.path.split("."):
            node = node.children.setdefault(key, _Node())
        node.writers.append((slot.index, _writer(slot, items.get(slot.path))))
    root.freeze()
    return root


@dataclass
class Layout:
    """The slots of one stage, and the writer of its facts."""

    top: Scope = field(default_factory=Scope)
    items: dict[str, Scope] = field(default_factory=dict)
    _reader: _Node | None = None

    def item_scope(self, path: str) -> Scope:
        return self.items.setdefault(path, Scope(ITEM_PREFIX))

    def freeze(self) -> None:
        """Build the writers once every rule has asked for its slots."""
        self._reader = _reader(self.top, self.items)

    def members(self, facts: Mapping[str, Any]) -> list[str | None]:
        """Each top-level slot's ``"key":value`` text, by slot index."""
        if self._reader is None:
            self.freeze()
        assert self._reader is not None
        found: list[str | None] = [None] * len(self.top.slots)
        self._reader.read(facts, found)
        return found
