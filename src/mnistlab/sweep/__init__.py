"""Studies that outgrow one process: many trainings over seeds and settings, on Ray.

    spec = SweepSpec(models=["fc"], seeds=[0, 1, 2, 3], grid={"lr": [0.01, 0.1]})
    executor = RayExecutor(RaySettings())            # a local Ray; address=... joins a cluster
    record, trials = driver.new_record(spec, executor)
    driver.run(record, trials, Path("sweeps/lr"), executor)

Modules: ``spec`` (the typed SweepSpec, validation, expansion into trials), ``trial`` (one
trial = fit() into its run folder, with resume), ``executor`` (in-process and Ray Tune behind
one interface), ``record`` (sweep.json), ``driver`` (a sweep start to end, resume),
``summary`` (groups, confidence intervals, summary.md/csv and the figure), ``progress`` (the
terminal view), ``report_hook`` (the report's seeds through the same machinery).
Ray is an optional extra (``pip install 'mnistlab[sweep]'``), imported only by ``executor``'s
functions.
"""

from mnistlab.sweep.spec import SweepSpec, TrialSpec, parse_grid
from mnistlab.sweep.trial import TrialMetrics, TrialOutcome, run_metrics, run_trial

__all__ = ["SweepSpec", "TrialMetrics", "TrialOutcome", "TrialSpec", "parse_grid",
           "run_metrics", "run_trial"]
