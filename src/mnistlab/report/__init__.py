"""The study, end to end: ``build_report(ReportConfig(...))`` trains, measures and writes
REPORT.md, report.html and report.json (see ``mnistlab.report.build``)."""

from mnistlab.report.build import DEFAULT_SEEDS, ReportConfig, build_report

__all__ = ["DEFAULT_SEEDS", "ReportConfig", "build_report"]
