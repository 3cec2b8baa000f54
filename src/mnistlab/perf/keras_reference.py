"""The seed's own stack as a yardstick: the seed FC / CNN trained with Keras 3 on TensorFlow.

Runs in its own virtual environment (`make bench` builds .bench-venv with tensorflow-cpu and
keras), apart from mnistlab's dependencies, so it imports neither torch nor mnistlab. The data
comes from the caller as an .npz file (x_train, y_train, x_test, y_test: uint8), so both
frameworks train on the same arrays:

    .bench-venv/bin/python src/mnistlab/perf/keras_reference.py \
        --data mnist.npz --model cnn --epochs 5

Prints one JSON line: images_per_second, wall_seconds and cpu_seconds (model.fit, tracing
included), epoch_seconds (each epoch's wall time: the first one includes the tracing),
test_accuracy, test_loss, parameters, versions.
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")      # keep oneDNN banners off stderr

import keras
import numpy as np
import tensorflow as tf


def build(model: str) -> keras.Model:
    """The seed report's layouts, layer for layer (Keras default init: Glorot-uniform, zeros)."""
    if model == "fc":
        layers = [keras.layers.Flatten(),
                  keras.layers.Dense(128, activation="relu"),
                  keras.layers.Dense(10, activation="softmax")]
    else:
        layers = []
        for width in (64, 128, 256):
            layers += [keras.layers.Conv2D(width, 3, activation="relu"),
                       keras.layers.MaxPooling2D(2)]
        layers += [keras.layers.Flatten(),
                   keras.layers.Dense(256, activation="relu"),
                   keras.layers.Dense(10, activation="softmax")]
    return keras.Sequential([keras.Input((28, 28, 1)), *layers])


def optimizer(model: str) -> keras.optimizers.Optimizer:
    # The seed presets: FC SGD lr 0.1 (what its logs show), CNN Adam 1e-3 (Keras defaults).
    if model == "fc":
        return keras.optimizers.SGD(learning_rate=0.1)
    return keras.optimizers.Adam(learning_rate=1e-3)


class EpochTimer(keras.callbacks.Callback):
    """Wall seconds of each epoch; a line {"epoch_done": k} after each, once its time is
    taken, for mnistlab bench's progress bar (a few microseconds in the whole fit's time)."""

    def __init__(self) -> None:
        super().__init__()
        self.seconds: list[float] = []

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.seconds.append(round(time.perf_counter() - self._start, 3))
        print(json.dumps({"epoch_done": epoch + 1}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help=".npz with x_train, y_train, x_test, y_test")
    parser.add_argument("--model", choices=("fc", "cnn"), default="cnn")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=0, help="TF intra-op threads (0: all)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    keras.utils.set_random_seed(args.seed)
    data = np.load(args.data)
    x_train = (data["x_train"].astype("float32") / 255.0)[..., None]    # (N, 28, 28, 1)
    x_test = (data["x_test"].astype("float32") / 255.0)[..., None]
    y_train, y_test = data["y_train"].astype("int64"), data["y_test"].astype("int64")

    model = build(args.model)
    model.compile(optimizer=optimizer(args.model), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    timer = EpochTimer()
    start, cpu = time.perf_counter(), time.process_time()
    model.fit(x_train, y_train, batch_size=args.batch_size, epochs=args.epochs, verbose=0,
              callbacks=[timer])
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    test_loss, test_accuracy = model.evaluate(x_test, y_test, verbose=0)
    print(json.dumps({
        "framework": "keras", "model": args.model, "epochs": args.epochs,
        "batch_size": args.batch_size, "train_images": len(x_train),
        "images_per_second": round(args.epochs * len(x_train) / wall, 1),
        "wall_seconds": round(wall, 3), "cpu_seconds": round(cpu, 3),
        "epoch_seconds": timer.seconds,
        "test_accuracy": float(test_accuracy),
        "test_loss": float(test_loss), "parameters": int(model.count_params()),
        "versions": {"keras": keras.__version__, "tensorflow": tf.__version__},
    }))


if __name__ == "__main__":
    main()
