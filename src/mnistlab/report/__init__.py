"""The study, end to end: ``mnistlab.report.build.build_report(ReportConfig(...))`` trains,
measures and writes REPORT.md, report.html and report.json.

Nothing is imported here: ``mnistlab --help`` reads ``report.defaults`` through this package,
and the study's modules pull in torch, matplotlib and scipy.
"""
