"""Alert rules over the structured events: a rule engine on event time, live or from logs.

See docs/alerts.md. Importing this package does no work and loads no optional dependency.
"""

from __future__ import annotations

from prismq_llmtools.alerts.actions import (
    PrintAction,
    StructlogAction,
    ThreadedAction,
    WebhookAction,
    slack_payload,
)
from prismq_llmtools.alerts.alert import Alert
from prismq_llmtools.alerts.durations import parse_duration
from prismq_llmtools.alerts.engine import AlertAction, AlertEngine, EngineStats
from prismq_llmtools.alerts.match import Filter, compile_predicate
from prismq_llmtools.alerts.pack import builtin_rules
from prismq_llmtools.alerts.rules import Condition, Match, Rule, RuleSet, load_rules, parse_rules
from prismq_llmtools.alerts.sources import AlertProcessor, SourceStats, replay
from prismq_llmtools.alerts.tail import FollowedFile, follow

__all__ = [
    "Alert",
    "AlertAction",
    "AlertEngine",
    "AlertProcessor",
    "Condition",
    "EngineStats",
    "Filter",
    "FollowedFile",
    "Match",
    "PrintAction",
    "Rule",
    "RuleSet",
    "SourceStats",
    "StructlogAction",
    "ThreadedAction",
    "WebhookAction",
    "builtin_rules",
    "compile_predicate",
    "follow",
    "load_rules",
    "parse_duration",
    "parse_rules",
    "replay",
    "slack_payload",
]
