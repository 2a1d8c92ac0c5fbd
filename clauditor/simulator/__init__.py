"""The test-data generator: realistic Claude API telemetry with planted incidents.

It ships with clauditor because ``clauditor demo`` and ``clauditor simulate`` use it (the demo's
committed sample is its output), but nothing else in the package imports it: ingest, analytics,
reports and alerts never depend on simulated data. :func:`simulate` writes the OTLP/JSON file;
the traffic model (services, workloads, models, incidents) is in the private ``_traffic``.
"""

from __future__ import annotations

from clauditor.simulator._spans import (
    SAMPLE_END,
    SPANS_PER_LINE,
    Incident,
    SimulationSummary,
    simulate,
)
from clauditor.simulator._traffic import UPGRADED_FROM

__all__ = [
    "SAMPLE_END",
    "SPANS_PER_LINE",
    "UPGRADED_FROM",
    "Incident",
    "SimulationSummary",
    "simulate",
]
