"""The ``clauditor`` command line: thin commands over the library, registered here.

Each command module (:mod:`clauditor.cli.jobs`, ``ingest``, ``query``, ``report``, ``prices``,
``reconcile``, ``demo``, ``clickhouse``) defines plain functions that parse their options, call
one library function and print the result; none registers itself. :data:`COMMANDS` and
:data:`GROUPS` below are the one list of what ``clauditor --help`` shows, in its order, and
:func:`build_app` is the one place that registers them (``tests/test_cli_registry.py`` holds
the two to each other). Library errors (:class:`clauditor.errors.ClauditorError`) become a
one-line ``error: ...`` on stderr and exit code 2 at the boundary
(:func:`clauditor.cli._common.handles_errors`), and nowhere else. Heavy modules are imported
inside the commands, so that ``clauditor --help`` stays fast.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from clauditor.cli import clickhouse, demo, ingest, jobs, prices, query, reconcile, report
from clauditor.cli._common import JOBS_PANEL, CliApp


class Command(NamedTuple):
    """One command: its name on the command line, its function, its panel in ``--help``."""

    name: str
    function: Callable[..., Any]
    panel: str | None = None


class Group(NamedTuple):
    """A command with subcommands (``clauditor prices check``); ``callback`` runs the group's
    own command when no subcommand is given (``clauditor prices``)."""

    name: str
    help: str
    commands: tuple[Command, ...]
    callback: Callable[..., Any] | None = None


COMMANDS: tuple[Command, ...] = (
    Command("costs", jobs.costs, JOBS_PANEL),
    Command("cache", jobs.cache, JOBS_PANEL),
    Command("errors", jobs.errors, JOBS_PANEL),
    Command("latency", jobs.latency, JOBS_PANEL),
    Command("budget", jobs.budget, JOBS_PANEL),
    Command("spikes", jobs.spikes, JOBS_PANEL),
    Command("failures", jobs.failures, JOBS_PANEL),
    Command("audit", jobs.audit, JOBS_PANEL),
    Command("ingest", ingest.ingest),
    Command("query", query.query),
    Command("report", report.report),
    Command("simulate", demo.simulate),
    Command("serve", ingest.serve),
    Command("reprice", prices.reprice),
    Command("export", query.export),
    Command("reconcile", reconcile.reconcile),
    Command("demo", demo.demo),
)

GROUPS: tuple[Group, ...] = (
    Group(
        "prices",
        "Show the price table, or import a newer one.",
        (Command("check", prices.prices_check), Command("update", prices.prices_update)),
        callback=prices.prices,
    ),
    Group(
        "clickhouse",
        "ClickHouse as the store, fed by the OpenTelemetry Collector.",
        (
            Command("init", clickhouse.clickhouse_init),
            Command("reprice", clickhouse.clickhouse_reprice),
        ),
    ),
    Group(
        "alerts",
        "Budget, error-rate, spike and cache alerts to Slack or a webhook.",
        (Command("check", report.alerts_check), Command("backtest", report.alerts_backtest)),
    ),
)


def _register(target: CliApp, command: Command) -> None:
    if command.panel is None:
        target.command(command.name)(command.function)
    else:
        target.command(command.name, rich_help_panel=command.panel)(command.function)


def build_app() -> CliApp:
    """The ``clauditor`` app: every entry of :data:`COMMANDS` and :data:`GROUPS`, nothing else."""
    root = CliApp(
        name="clauditor",
        help="See, explain and control what your Claude API usage costs.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )
    for command in COMMANDS:
        _register(root, command)
    for group in GROUPS:
        sub = CliApp(help=group.help, no_args_is_help=False)
        if group.callback is not None:
            sub.callback(invoke_without_command=True)(group.callback)
        for command in group.commands:
            _register(sub, command)
        root.add_typer(sub, name=group.name)
    return root


app = build_app()


def main() -> None:
    """Console-script entry point."""
    app()


__all__ = ["COMMANDS", "GROUPS", "Command", "Group", "app", "build_app", "main"]
