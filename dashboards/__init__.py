"""clauditor.dashboards: Plotly figures and the self-contained HTML report."""

from clauditor.dashboards.report import ReportSummary, render_report, write_report

__all__ = ["ReportSummary", "render_report", "write_report"]
