"""Training: one typed config, presets, a loop in named phases, numbers returned, not printed.

    config = TrainConfig(model="cnn", **preset_overrides("seed", "cnn"))   # train.config
    result = fit(config, run_dir)       # train.fit: trains, checkpoints each epoch, writes it
    evaluate(model, x, y)               # train.phases: {"test_loss": ..., "test_accuracy": ...}
    evaluate_run(load_run(run_dir))     # train.evaluation: a saved run on its own test set

Modules: ``config`` (TrainConfig and its validation), ``presets`` (named recipes), ``data``
(a dataset's tensors), ``build`` (model, optimizer, schedule), ``optimizers`` (fused Adam and
AdamW without per-step gathering), ``precision`` (precision and engine), ``probe`` (the engine
probe and its cache), ``device`` (--device, and the data moved there), ``phases`` (one epoch,
evaluate, predict), ``fit`` (the run), ``resume`` (checkpoints), ``evaluation`` (a saved run,
ready to evaluate), ``callbacks`` (what a run shows while it runs), ``calibration`` and
``typicality`` (confidence and "unsure"), ``ensemble`` and ``selection`` (several runs
averaged, chosen on validation).

The package imports none of its modules: import each name from its module
(``from mnistlab.train.fit import fit``, ``from mnistlab.train.config import TrainConfig``). The
run schema (``mnistlab.runs``) records a ``TrainConfig``, and ``fit`` writes runs, so importing
``train.config`` must not pull in ``fit``: no module here imports the other way round.
"""
