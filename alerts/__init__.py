"""clauditor.alerts: rules -> episodes -> state -> Slack / webhook (issue 7).

Library entry points the CLI calls: :func:`check_alerts` (``clauditor alerts check``) and
:func:`backtest` (``clauditor alerts backtest``). The rule syntax is in
:mod:`clauditor.alerts.rules`; the state machine in :mod:`clauditor.alerts.evaluate`; the
idempotent outbox in :mod:`clauditor.alerts.state`; payloads in :mod:`clauditor.alerts.slack`;
delivery with retries in :mod:`clauditor.alerts.deliver`.
"""

from clauditor.alerts.deliver import RetryPolicy, Sink, WebhookSink, sinks_from_env
from clauditor.alerts.evaluate import CheckResult, backtest, check_alerts, decide
from clauditor.alerts.message import AlertMessage, render_text
from clauditor.alerts.rules import RULE_NAMES, AlertRules, parse_rules
from clauditor.alerts.slack import slack_payload, webhook_payload
from clauditor.alerts.state import Incident

__all__ = [
    "RULE_NAMES",
    "AlertMessage",
    "AlertRules",
    "CheckResult",
    "Incident",
    "RetryPolicy",
    "Sink",
    "WebhookSink",
    "backtest",
    "check_alerts",
    "decide",
    "parse_rules",
    "render_text",
    "sinks_from_env",
    "slack_payload",
    "webhook_payload",
]
