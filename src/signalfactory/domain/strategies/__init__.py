"""Strategies: rule-backed (built-in or user-written) and Python ones (installed plug-ins,
or uploaded and run in the sandbox).

>>> s = builtin_strategy("sma_cross", fast=5, slow=20)
>>> s.required_lookback
20
"""

from signalfactory.domain.strategies.base import (
    PythonStrategy,
    RuleStrategy,
    SourceHashed,
    Strategy,
    StrategyParam,
    code_hash,
)
from signalfactory.domain.strategies.builtin import (
    BUILTIN_TEMPLATES,
    RuleTemplate,
    builtin_strategy,
)
from signalfactory.domain.strategies.signals import SignalRecord, signal_records

__all__ = ["BUILTIN_TEMPLATES", "PythonStrategy", "RuleStrategy", "RuleTemplate", "SignalRecord",
           "SourceHashed", "Strategy", "StrategyParam", "builtin_strategy", "code_hash",
           "signal_records"]
