"""Confidence calibrated on a held-out validation split: temperature scaling and "unsure"."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mnistlab.errors import UserError
from mnistlab.train.calibration import (
    CALIBRATION,
    Calibration,
    calibration_from_logits,
    expected_calibration_error,
    fit_temperature,
    load_calibration,
    nll,
    save_calibration,
    softmax,
)
from mnistlab.train.config import TrainConfig
from mnistlab.train.data import load_tensors, load_validation
from mnistlab.train.fit import fit


def test_temperature_recovers_a_known_overconfidence():
    # Labels drawn from softmax(z); the model reports 3z: the fitted T must be about 3.
    rng = np.random.default_rng(0)
    z = rng.normal(0, 2, (20000, 10))
    p = softmax(z).astype(np.float64)
    labels = np.array([rng.choice(10, p=row / row.sum()) for row in p])
    t = fit_temperature(3 * z, labels)
    assert 2.8 < t < 3.2
    assert nll(3 * z, labels, t) < nll(3 * z, labels)
    assert expected_calibration_error(softmax(3 * z / t), labels) < \
        expected_calibration_error(softmax(3 * z), labels)


def test_validation_images_are_held_out_of_training():
    config = TrainConfig(model="fc", validation=5000)
    x_train, _, _, _ = load_tensors(config)
    x_val, _ = load_validation(config)
    full = load_tensors(TrainConfig(model="fc"))[0]
    assert len(x_train) == len(full) - 5000 and len(x_val) == 5000
    assert torch.equal(x_val, full[-5000:]) and torch.equal(x_train, full[:-5000])
    with pytest.raises(UserError, match="no validation"):
        load_validation(TrainConfig(model="fc"))


def test_fit_with_validation_writes_a_calibration_the_run_reads_back(tmp_path):
    config = TrainConfig(model="fc", optimizer="sgd", lr=0.1, epochs=1, batch_size=64,
                         limit=4000, test_limit=1000, validation=2000, threads=1)
    result = fit(config, tmp_path / "run")
    cal = result.calibration
    assert isinstance(cal, Calibration)
    assert cal.validation_images == 2000
    assert 0.2 < cal.temperature < 5
    assert cal.nll_after <= cal.nll_before + 1e-9
    assert 0.005 < cal.unsure_share < 0.02           # the least confident 1% of validation
    assert 0.0 <= cal.errors_flagged <= 1.0
    assert load_calibration(tmp_path / "run") == cal
    saved = json.loads((tmp_path / "run" / CALIBRATION).read_text())
    assert saved["temperature"] == cal.temperature
    # a run trained without a validation split carries none
    plain = fit(TrainConfig(model="fc", epochs=1, limit=500, test_limit=100, threads=1),
                tmp_path / "plain")
    assert plain.calibration is None and load_calibration(tmp_path / "plain") is None


def test_a_damaged_calibration_file_is_one_clear_error(tmp_path):
    (tmp_path / CALIBRATION).write_text('{"temperature": "warm"}')
    with pytest.raises(UserError, match="calibration"):
        load_calibration(tmp_path)


@pytest.mark.parametrize(("key", "value"), [
    ("temperature", "1.2"), ("temperature", True), ("unsure_below", None),
    ("validation_images", 5000.5), ("model_sha256", 7)])
def test_a_calibration_field_of_the_wrong_type_is_refused_not_coerced(tmp_path, key, value):
    # "1.2" and true were read as numbers
    rng = np.random.default_rng(0)
    fitted = calibration_from_logits(rng.normal(size=(200, 10)), rng.integers(0, 10, 200))
    save_calibration(tmp_path, fitted)
    assert load_calibration(tmp_path) == fitted
    saved = json.loads((tmp_path / CALIBRATION).read_text())
    (tmp_path / CALIBRATION).write_text(json.dumps(saved | {key: value}))
    with pytest.raises(UserError, match=f"{key} .* is not a"):
        load_calibration(tmp_path)
