"""The second reason to be unsure: a picture whose features lie far from every digit's."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from mnistlab.cli import main
from mnistlab.errors import UserError
from mnistlab.inference.predict import (
    NumberPrediction,
    Prediction,
    assess,
    load_predictor,
    predict_preprocessed,
)
from mnistlab.inference.preprocess import preprocess_gray
from mnistlab.train.calibration import (
    CALIBRATION,
    NOT_CONFIDENT,
    UNLIKE_DIGITS,
    load_calibration,
    save_calibration,
)
from mnistlab.train.config import TrainConfig
from mnistlab.train.data import load_validation
from mnistlab.train.fit import fit as fit_run
from mnistlab.train.typicality import TYPICALITY, fit, load_typicality, save_typicality

pytestmark = pytest.mark.timeout(300)


def _clusters(rng: np.random.Generator, n: int, d: int = 6) -> tuple[np.ndarray, np.ndarray]:
    labels = rng.integers(0, 3, n)
    centres = np.array([[0.0] * d, [6.0] + [0.0] * (d - 1), [0.0, 6.0] + [0.0] * (d - 2)])
    scale = np.linspace(0.5, 2.0, d)             # a covariance that is not the identity
    return centres[labels] + rng.normal(size=(n, d)) * scale, labels


def test_distance_is_mahalanobis_to_the_nearest_class_and_flags_one_percent():
    rng = np.random.default_rng(0)
    features, labels = _clusters(rng, 6000)
    val, _ = _clusters(rng, 4000)
    t = fit(features, labels, val, shrinkage=0.0)
    assert t is not None and t.far_share == pytest.approx(0.01, abs=0.002)
    # brute force on a few points: (f - m_k) C^-1 (f - m_k), the smallest over the classes
    points = np.vstack([val[:5], [[30.0, -30.0, 0, 0, 0, 0]]])
    inv = np.linalg.inv(np.cov((features - t.means[labels]).T, bias=True))
    brute = [min(float((p - m) @ inv @ (p - m)) for m in t.means) for p in points]
    assert np.allclose(t.distance(points), brute, rtol=1e-6)
    fresh, _ = _clusters(rng, 4000)                  # unseen points of the same classes
    assert 0.003 < t.far(fresh).mean() < 0.03
    assert t.far(np.array([[30.0, -30.0, 0, 0, 0, 0]]))[0]      # nowhere near any class
    assert not t.far(t.means).any()                              # each class's centre
    with pytest.raises(UserError, match="belongs to another model"):
        t.distance(np.zeros((2, 5)))


def test_features_that_cannot_be_fitted_leave_confidence_alone():
    labels = np.arange(200) % 10
    dead = np.zeros((200, 8))                                    # every ReLU dead
    assert fit(dead, labels, dead[:50]) is None
    diverged = np.full((200, 8), np.nan)
    assert fit(diverged, labels, diverged[:50]) is None


def test_saved_and_loaded_it_decides_the_same(tmp_path):
    rng = np.random.default_rng(1)
    features, labels = _clusters(rng, 3000)
    t = fit(features, labels, _clusters(rng, 2000)[0])
    assert t is not None
    save_typicality(tmp_path, t)
    back = load_typicality(tmp_path)
    assert back is not None and back.fit_images == 3000
    probe, _ = _clusters(rng, 2000)
    probe[::7] *= 5                                   # some far ones
    assert np.array_equal(back.far(probe), t.far(probe))
    save_typicality(tmp_path, None)                   # a calibration without one removes it
    assert not (tmp_path / TYPICALITY).exists() and load_typicality(tmp_path) is None
    (tmp_path / TYPICALITY).write_bytes(b"not safetensors")
    with pytest.raises(UserError, match="damaged"):
        load_typicality(tmp_path)


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory):
    """A small fc run trained with a validation split: its calibration carries the fit."""
    run = tmp_path_factory.mktemp("typicality") / "run"
    config = TrainConfig(model="fc", optimizer="sgd", lr=0.1, epochs=1, batch_size=64,
                         limit=6000, test_limit=500, validation=2000, threads=1)
    fit_run(config, run)
    return run, config


def test_training_with_validation_writes_it_and_predict_says_why(calibrated):
    run, config = calibrated
    cal = load_calibration(run)
    assert cal is not None and cal.typicality is not None
    assert cal.typicality.fit_images == 6000                    # every training image (< 20k)
    assert cal.typicality.means.shape == (10, 128)              # fc's hidden layer
    predictor = load_predictor(run)
    x_val, _ = load_validation(config)
    digits = assess(predictor, x_val.numpy())
    assert digits.reasons is not None and len(digits.reasons) == 2000
    unlike = np.mean([r == UNLIKE_DIGITS for r in digits.reasons])
    low = np.mean([r == NOT_CONFIDENT for r in digits.reasons])
    assert unlike <= 0.012 and 0.005 <= low <= 0.012              # 1% each, fitted right here
    # the same digits as white paper with black ink, fed raw: nothing like what it learnt
    inverted = assess(predictor, 1.0 - x_val[:300].numpy())
    assert inverted.reasons is not None
    assert np.mean([r is not None for r in inverted.reasons]) > 0.9
    assert UNLIKE_DIGITS in inverted.reasons


def test_a_reading_carries_its_reason_into_json(calibrated):
    run, _ = calibrated
    predictor = load_predictor(run)
    noise = np.random.default_rng(2).random((28, 28)).astype(np.float32)
    pre = preprocess_gray(np.pad(noise, 20))
    assessed = assess(predictor, pre.image[None])
    assert assessed.reasons is not None
    one = predict_preprocessed(predictor, pre)
    assert isinstance(one, Prediction)
    assert one.unsure == (assessed.reasons[0] is not None)
    assert one.to_json()["unsure_reason"] == one.unsure_reason
    sure = Prediction("a", 1, 0.99, [0.0] * 10, [(1, 0.99)], pre, unsure=False)
    odd = Prediction("b", 7, 0.99, [0.0] * 10, [(7, 0.99)], pre, unsure=True,
                     unsure_reason=UNLIKE_DIGITS)
    number = NumberPrediction("n", [sure, odd], (28, 56))
    assert number.unsure and number.unsure_reason == f"{UNLIKE_DIGITS} (digit 2 of 2)"
    body = number.to_json()
    assert [d["unsure_reason"] for d in body["digits"]] == [None, UNLIKE_DIGITS]


def test_a_run_calibrated_before_it_existed_still_flags_low_confidence(calibrated, tmp_path):
    run, _ = calibrated
    cal = load_calibration(run)
    assert cal is not None
    folder = tmp_path / "old"
    folder.mkdir()
    saved = json.loads((run / CALIBRATION).read_text())
    assert len(saved.pop("typicality_sha256")) == 64            # what files older than it lack
    (folder / CALIBRATION).write_text(json.dumps(saved))
    old = load_calibration(folder)
    assert old is not None and old.typicality is None
    probs = np.full((2, 10), 0.1)
    probs[1] = [0.999] + [0.0001] * 9
    assert old.far(np.zeros((2, 128))) is None                    # no fit: nobody can say
    assert old.reasons(probs, old.far(np.zeros((2, 128)))) == [NOT_CONFIDENT, None]
    save_calibration(folder, cal)                                 # with its fit: written
    assert (folder / TYPICALITY).is_file()
    save_calibration(folder, old)                                 # without: none stays behind
    assert not (folder / TYPICALITY).exists()


def test_a_calibration_whose_fit_is_missing_or_another_s_is_refused(calibrated, tmp_path):
    # with typicality.safetensors gone, "unlike the digits it learnt" went off in silence
    run, _ = calibrated
    folder = tmp_path / "copy"
    folder.mkdir()
    (folder / CALIBRATION).write_text((run / CALIBRATION).read_text())
    with pytest.raises(UserError, match="is missing: without it nothing would be flagged"):
        load_calibration(folder)
    fit = load_typicality(run)
    assert fit is not None
    save_typicality(folder, replace(fit, far_above=fit.far_above * 2))
    with pytest.raises(UserError, match="is another fit"):
        load_calibration(folder)
    (folder / TYPICALITY).write_bytes((run / TYPICALITY).read_bytes())
    assert load_calibration(folder) == load_calibration(run)


def test_the_calibrate_command_refits_a_run(calibrated, tmp_path, capsys):
    run, _ = calibrated
    (run / TYPICALITY).unlink()
    assert main(["calibrate", str(run), "--json"]) == 0
    assert (run / TYPICALITY).is_file()
    out = capsys.readouterr().out
    assert "unlike the digits it learnt" in out and '"far_share": 0.01' in out
    plain = tmp_path / "plain"
    fit_run(TrainConfig(model="fc", epochs=1, limit=300, test_limit=100, threads=1), plain)
    assert main(["calibrate", str(plain)]) == 2
    assert "held out no validation images" in capsys.readouterr().err


def test_an_onnx_export_gives_the_same_reasons(calibrated):
    pytest.importorskip("onnxscript")
    from mnistlab.inference.export import export_run
    from mnistlab.inference.predict import OnnxPredictor

    run, config = calibrated
    exported = export_run(run)                     # RUN/model.onnx: shares the calibration
    onnx = OnnxPredictor(exported["onnx_path"])
    assert onnx.with_features and onnx.calibration is not None
    x = np.concatenate([load_validation(config)[0][:200].numpy(),
                        1.0 - load_validation(config)[0][:100].numpy()])
    torch_logits, torch_features = load_predictor(run).logits_and_features(x)
    onnx_logits, onnx_features = onnx.logits_and_features(x)
    assert onnx_features is not None and torch_features is not None
    assert np.allclose(onnx_features, torch_features, atol=1e-4)
    assert np.allclose(onnx_logits, torch_logits, atol=1e-4)
    assert assess(onnx, x).reasons == assess(load_predictor(run), x).reasons


def test_concurrent_readers_get_their_own_features(calibrated):
    # serve reads several pictures at once with one model: nothing may cross between them
    import concurrent.futures

    run, config = calibrated
    predictor = load_predictor(run)
    x = load_validation(config)[0][:64].numpy()
    alone = [predictor.logits_and_features(x[i:i + 1])[1] for i in range(len(x))]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda i: predictor.logits_and_features(x[i:i + 1])[1],
                                 range(len(x))))
    assert all(np.array_equal(a, b) for a, b in zip(alone, together, strict=True))


def test_the_server_says_why_too(calibrated):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from mnistlab.data.realworld import non_digits
    from mnistlab.inference.realworld import encode_png
    from mnistlab.serve import create_app

    run, _ = calibrated
    reasons = set()
    with TestClient(create_app(str(run))) as client:
        for sample in non_digits(10):
            r = client.post("/api/predict", content=encode_png(sample.picture),
                            headers={"Content-Type": "image/png"})
            if r.status_code != 200:                     # refused as blank: not a reading
                continue
            body = r.json()
            assert body["calibrated"] is True
            assert body["unsure"] == (body["unsure_reason"] is not None)
            reasons.add(body["unsure_reason"])
    # a number's reason names its digit too: "unlike the digits it learnt (digit 2 of 3)"
    assert any(r is not None and r.startswith((NOT_CONFIDENT, UNLIKE_DIGITS)) for r in reasons)
