"""Compile a checked rule into a flat program: one step per distinct IR node.

Equal sub-expressions (anywhere in entry, exit, short parts or score) are one step, so each
is computed once per evaluation. Steps are in dependency order; a step's ``args`` are the
slots of its children. The evaluator runs the steps in order over each block of bars.
"""

from __future__ import annotations

from dataclasses import dataclass

from signalfactory.domain.rules import ir
from signalfactory.domain.rules.ruleset import RuleSet


@dataclass(frozen=True)
class Step:
    slot: int
    node: ir.Node
    args: tuple[int, ...]


@dataclass(frozen=True)
class Plan:
    steps: tuple[Step, ...]
    roots: tuple[tuple[str, int], ...]
    named: tuple[tuple[str, int], ...]
    #: indicator step slot -> per output, the slot of the reported ``Output`` step, or -1
    output_slots: dict[int, tuple[int, ...]]


def compile_plan(rule: RuleSet) -> Plan:
    slot_of: dict[ir.Node, int] = {}
    steps: list[Step] = []

    def visit(node: ir.Node) -> int:
        found = slot_of.get(node)
        if found is not None:
            return found
        args = tuple(visit(child) for child in ir.children(node))
        steps.append(Step(len(steps), node, args))
        slot_of[node] = len(steps) - 1
        return len(steps) - 1

    roots = tuple((label, visit(node)) for label, node in rule.parts)
    named = tuple((text, visit(node)) for text, node in rule.named)
    output_slots: dict[int, list[int]] = {}
    for _, slot in named:
        step = steps[slot]
        if isinstance(step.node, ir.Output):
            n_outputs = len(rule.registry[step.node.call.indicator].outputs)
            targets = output_slots.setdefault(step.args[0], [-1] * n_outputs)
            targets[step.node.index] = slot
    return Plan(tuple(steps), roots, named, {k: tuple(v) for k, v in output_slots.items()})
