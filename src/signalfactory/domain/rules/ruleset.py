"""A checked rule (``RuleSet``), its warm-up, and the check that the data is long enough."""

from __future__ import annotations

from dataclasses import dataclass, field

from signalfactory.domain.errors import BadInputError
from signalfactory.domain.indicators.registry import IndicatorRegistry
from signalfactory.domain.indicators.registry import registry as default_registry
from signalfactory.domain.rules import ir
from signalfactory.domain.rules.checker import Checker
from signalfactory.domain.rules.parser import parse_rule
from signalfactory.domain.rules.syntax import PART_LABELS, RuleText, render_rule

CONDITION_LABELS = ("entry", "exit", "short_entry", "short_exit")


@dataclass(frozen=True, eq=False)
class RuleSet:
    """A rule whose names, arities, parameters and types have been checked.

    ``parts`` maps each present label to its IR root (a condition, or a number for
    ``score``); ``named`` lists the indicator-like sub-expressions (indicator outputs,
    ``highest``/``lowest``, look-backs ``x[n]``) by canonical text, whose values an evaluation
    reports; ``lookback`` is the number of leading bars of each instrument on which the rule
    cannot yet be fully evaluated (its warm-up).
    """

    syntax: RuleText
    parts: tuple[tuple[str, ir.Cond | ir.Num], ...]
    named: tuple[tuple[str, ir.Num], ...]
    lookback: int
    registry: IndicatorRegistry = field(repr=False)

    @property
    def source(self) -> str:
        return self.syntax.source

    @property
    def canonical_text(self) -> str:
        """Whitespace-, case- and comment-insensitive text of the rule (stable for hashing)."""
        return render_rule(self.syntax)

    def part(self, label: str) -> ir.Cond | ir.Num | None:
        return next((node for name, node in self.parts if name == label), None)

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.parts)


def check_rule(rule: str | RuleText | RuleSet,
               registry: IndicatorRegistry = default_registry) -> RuleSet:
    """Parse (if given text) and check a rule; BadInputError with ``position`` on any error."""
    if isinstance(rule, RuleSet):
        return rule
    syntax = parse_rule(rule) if isinstance(rule, str) else rule
    checker = Checker(registry)
    parts: list[tuple[str, ir.Cond | ir.Num]] = []
    for label in PART_LABELS:
        part = syntax.part(label)
        if part is None:
            continue
        node: ir.Cond | ir.Num
        if label == "score":
            node = checker.num(part.expr, "'score:'")
        else:
            node = checker.cond(part.expr, f"'{label}:'")
        parts.append((label, node))
    named = tuple((text, node) for node, text in checker.named.items())
    lookback = max((node_lookback(node, registry) for _, node in parts), default=0)
    return RuleSet(syntax=syntax, parts=tuple(parts), named=named, lookback=lookback,
                   registry=registry)


def node_lookback(node: ir.Node, registry: IndicatorRegistry,
                  memo: dict[ir.Node, int] | None = None) -> int:
    """Leading bars over which ``node`` is undefined, for data without gaps."""
    memo = {} if memo is None else memo
    if node in memo:
        return memo[node]
    inner = max((node_lookback(c, registry, memo) for c in ir.children(node)), default=0)
    own = 0
    if isinstance(node, ir.Apply):
        own = registry[node.indicator].lookback(node.params)
    elif isinstance(node, ir.Shift | ir.BoolShift):
        own = node.bars
    elif isinstance(node, ir.Window):
        own = node.bars - 1
    memo[node] = inner + own
    return inner + own


def rule_lookback(rule: str | RuleText | RuleSet) -> int:
    """Warm-up bars the rule needs before its first fully defined bar."""
    return check_rule(rule).lookback


def check_enough_bars(rule: str | RuleText | RuleSet, n_bars: int) -> None:
    """BadInputError unless ``n_bars`` bars leave at least one bar after the warm-up."""
    lookback = rule_lookback(rule)
    if n_bars <= lookback:
        raise BadInputError(
            f"the rule looks back {lookback} bars, so it needs at least {lookback + 1} bars "
            f"of history, but the data has {n_bars}; load more history or shorten the "
            "indicator periods", rule="history")
