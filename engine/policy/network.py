"""A model of durable_rules' alpha network, to keep each ruleset in bounds.

The engine turns each rule's expression into a chain of test nodes (its
alpha network), sharing a node between rules when the parent, slot,
operator and value are the same; ``$or`` branches all lead to one
forwarding node, and ``$iany``/``$iall`` nodes are never shared. Its C
arrays are of fixed size, and overflowing them fails or hangs:

- evaluating a fact walks the network with a stack of 64 nodes: when more
  would wait at once, the assertion fails with error 303 and returns nothing.
  ``Network.stack`` bounds that height for the worst fact, counting every
  child test as true except that equality tests of one slot exclude each
  other (the height of a node is its number of children, minus one, plus
  the height of its tallest child, which the engine may visit first);
- a node's children live in a 512-entry open-addressing table: full, it
  spins forever on every assertion;
- at most 256 rules may end in one node (error 108), at most 128 ``$or``
  branches may end in one node (error 107), 4096 rules per ruleset.

The compiler adds rules to a ``Network`` until a limit would be passed, then
starts a new ruleset. The budgets below keep a margin under each limit.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from engine.policy.lowering import EQ, All, AnyOf, Cmp, Each, Expr

STACK_LIMIT = 64  # durable_rules' MAX_STACK_SIZE
STACK_BUDGET = 60
MAX_CHILDREN = 256  # of the 512 hash entries a node has
MAX_RULES_PER_NODE = 200  # of 256
MAX_FORWARDS_PER_NODE = 100  # of 128
MAX_RULES = 1000  # of 4096


@dataclass(eq=False)
class Node:
    test: Cmp | None = None  # None: the root, a forwarding or an item node
    children: dict[Cmp, Node] = field(default_factory=dict)
    items: list[Node] = field(default_factory=list)
    forwards: list[Node] = field(default_factory=list)
    rules: int = 0

    def child(self, test: Cmp) -> Node:
        found = self.children.get(test)
        if found is None:
            found = self.children[test] = Node(test)
        return found

    def successors(self) -> list[Node]:
        return [*self.children.values(), *self.items, *self.forwards]


@dataclass(frozen=True)
class Limits:
    """What a network needs, to compare with the budgets."""

    stack: int
    widest: int  # most children of one node
    most_rules: int  # most rules ending in one node
    most_forwards: int  # most $or branches ending in one node
    rules: int

    def exceeded(self) -> str | None:
        """The first budget this network passes, in words, or None."""
        if self.stack > STACK_BUDGET:
            return (
                f"up to {self.stack} of its conditions can hold at once for one "
                f"fact and the engine tracks at most {STACK_LIMIT}"
            )
        if self.widest > MAX_CHILDREN:
            return f"one condition is followed by {self.widest} different ones"
        if self.most_rules > MAX_RULES_PER_NODE:
            return f"{self.most_rules} rules end in one identical condition"
        if self.most_forwards > MAX_FORWARDS_PER_NODE:
            return f"{self.most_forwards} alternatives end in one condition"
        if self.rules > MAX_RULES:
            return f"it has {self.rules} rules"
        return None


class Network:
    """The alpha network of one ruleset, built as the engine builds it."""

    def __init__(self) -> None:
        self.root = Node()
        self.rules = 0

    def add(self, expr: Expr) -> None:
        """Add one rule whose whole condition is ``expr``."""
        self._build(expr, self.root).rules += 1
        self.rules += 1

    def _build(self, expr: Expr, parent: Node) -> Node:
        if isinstance(expr, Cmp):
            return parent.child(expr)
        if isinstance(expr, All):
            node = parent
            for part in expr.parts:
                node = self._build(part, node)
            return node
        if isinstance(expr, AnyOf):
            forward = Node()
            for part in expr.parts:
                self._build(part, parent).forwards.append(forward)
            return forward
        if isinstance(expr, Each):
            node = Node()
            parent.items.append(node)
            return node
        raise ValueError(f"a constant has no engine form: {expr}")

    def limits(self) -> Limits:
        nodes = self._nodes()
        return Limits(
            stack=_height(self.root, {}),
            widest=max(len(n.children) + len(n.items) for n in nodes),
            most_rules=max(n.rules for n in nodes),
            most_forwards=max(len(n.forwards) for n in nodes),
            rules=self.rules,
        )

    def _nodes(self) -> list[Node]:
        seen: dict[int, Node] = {}
        pending = [self.root]
        while pending:
            node = pending.pop()
            if id(node) not in seen:
                seen[id(node)] = node
                pending.extend(node.successors())
        return list(seen.values())


def _height(node: Node, memo: dict[int, int]) -> int:
    """How far the stack grows below ``node`` for the worst fact."""
    known = memo.get(id(node))
    if known is not None:
        return known
    successors = node.successors()
    height = 0
    if successors:
        width = _width(node)
        tallest = max(_height(child, memo) for child in successors)
        height = max(width, width - 1 + tallest)
    memo[id(node)] = height
    return height


def _width(node: Node) -> int:
    """Children that can hold at once: one per slot among equality tests."""
    equal_slots = {t.ref for t in node.children if t.op == EQ}
    others = sum(1 for t in node.children if t.op != EQ)
    return len(equal_slots) + others + len(node.items) + len(node.forwards)


def alone(expr: Expr) -> Limits:
    """The limits of a ruleset holding only this rule."""
    network = Network()
    network.add(expr)
    return network.limits()
