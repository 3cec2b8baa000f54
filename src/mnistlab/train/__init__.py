"""Training: one typed config, presets, a loop in named phases, numbers returned, not printed.

    config = TrainConfig(model="cnn", **preset_overrides("seed", "cnn"))
    result = fit(config, run_dir)                 # trains, checkpoints each epoch, writes the run
    evaluate(model, x, y)                         # {"test_loss": ..., "test_accuracy": ...}
    predict_proba(model, images)                  # np.ndarray (N, 10), rows sum to 1
    evaluate_run("runs/cnn-seed-s0")              # a saved run on its own test set

Modules: ``config`` (TrainConfig and its validation), ``presets`` (named recipes), ``data``
(a dataset's tensors), ``build`` (model, optimizer, schedule), ``precision`` (precision and
engine), ``phases`` (one epoch, evaluate, predict), ``fit`` (the run), ``resume`` (checkpoints),
``evaluation`` (a saved run, ready to evaluate), ``callbacks`` (what a run shows while it
runs), ``ensemble`` (several runs averaged).

The package imports none of its modules: import each name from its module
(``from mnistlab.train.fit import fit``, ``from mnistlab.train.config import TrainConfig``). The
run schema (``mnistlab.runs``) records a ``TrainConfig``, and ``fit`` writes runs, so importing
``train.config`` must not pull in ``fit``: no module here imports the other way round.
"""
