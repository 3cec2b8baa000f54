"""Every number the seed report (the study this project reproduces) states, with where it says it.

Accuracies as fractions, losses as printed. The report puts each beside this run's value.
"""

from __future__ import annotations

# Figure 2: Keras's per-epoch log of the FC model (running mean over the epoch's batches).
FC_LOG = [  # (epoch, train accuracy, train loss)
    (1, 0.8467, 0.5667),
    (2, 0.9386, 0.2136),
    (3, 0.9556, 0.1566),
    (4, 0.9647, 0.1228),
    (5, 0.9720, 0.1013),
]

SEED = {
    "dataset_images": 70_000,          # section 1: "70,000 28x28 pixel grayscale images"
    "batch_size": 64,                  # cell [10]
    "epochs": 5,                       # cell [10]
    "steps_per_epoch": 938,            # figure 2: "938/938"
    "eval_steps": 313,                 # figure 2: "313/313"
    "fc_parameters": 101_770,          # figure 1
    "fc_lr_text": 0.01,                # section 2.2 text (its logs fit 0.1; see train/presets.py)
    "fc_train_accuracy": 0.9720,       # figure 2, epoch 5
    "fc_train_loss": 0.1013,           # figure 2, epoch 5
    "fc_test_accuracy": 0.9689,        # figure 2: "accuracy: 0.9689", 96.89%
    "fc_test_loss": 0.1065,            # figure 2
    "cnn_parameters": 438_026,         # figure 3
    "cnn_test_accuracy": 0.9855,       # figure 4: 98.55%
    "improvement_points": 1.66,        # section 3.3: "improvement of 1.66%"
    "grid_images": 20,                 # figure 5 (a 5x4 grid)
    "grid_accuracy": 1.0,              # figure 5: "100% accuracy on this sample"
}

# The seed's qualitative claims, each tested by a measurement in the report.
CLAIMS = {
    "fc_gap_overfitting": "This small gap is a classic indicator of overfitting (section 2.3)",
    "cnn_smaller_gap": "the gap between training and test accuracy was smaller [for the CNN], "
                       "indicating that the CNN generalizes better (section 3.3)",
    "extremely_confident": "it is often extremely confident in its correct predictions "
                           "(section 4); most predictions showing 100% confidence (figure 5)",
    "loss_decreases": "a consistent decrease in loss over iterations (figure 6)",
}
