"""Every step kind, run for real through substratools 0.6.1 with the test assets."""

from __future__ import annotations

import json

import numpy as np
import pytest

from substra_worker.node import executor as ex
from tests import assets


def fit(points):
    xs, ys = np.array(points).T
    a, b = np.polyfit(xs, ys, 1)
    return float(a), float(b)


def train(run, sandbox, script, samples, models=None, name="train"):
    """One traintuple step as the node runs it; returns (result, out model path)."""
    box = sandbox(name)
    data = ex.prepare_data_samples_dir(box, samples)
    models_dir = ex.prepare_models_dir(box, models or {})
    out = box / "output_model"
    argv = ex.train_args(
        list(models or {}), 0, data, models_dir, out, assets.opener_path(), box / "train.log"
    )
    return run(argv, script, box), out


def predict_and_score(run, sandbox, extracted, script, model, samples, name="test"):
    """A testtuple: predict then metrics in one sandbox; returns (perf, predictions)."""
    box = sandbox(name)
    data = ex.prepare_data_samples_dir(box, samples)
    models_dir = ex.prepare_models_dir(box, {"model": model})
    pred = box / "pred" / "predictions"
    result = run(
        ex.predict_args("model", models_dir, data, assets.opener_path(), pred), script, box
    )
    assert result.ok, result.log
    perf_path = box / "perf.json"
    metrics = extracted("metrics")
    result = run(ex.metrics_args(pred, perf_path, data, assets.opener_path()), metrics, box)
    assert result.ok, result.log
    return ex.read_perf(perf_path), json.loads(pred.read_text())


def test_train_predict_metrics_gives_the_least_squares_fit_and_its_score(
    run, sandbox, extracted, train_samples, test_samples
):
    # Given the linear algo and data following y = 2x + 1 + noise
    algo = extracted("algo")

    # When a traintuple runs
    result, out = train(run, sandbox, algo, train_samples)

    # Then the model is the least-squares fit of the samples
    assert result.ok and result.error is None and result.returncode == 0, result.log
    assert "trained on 15 points" in result.log
    model = json.loads(out.read_text())
    a, b = fit(assets.sample_points(train_samples))
    assert model == pytest.approx({"a": a, "b": b}, abs=1e-9)
    assert model == pytest.approx({"a": assets.SLOPE, "b": assets.INTERCEPT}, abs=0.1)

    # When a testtuple predicts and scores on the test samples
    perf, predictions = predict_and_score(run, sandbox, extracted, algo, out, test_samples)

    # Then predictions and perf (negative MSE) match an independent computation
    xs, ys = np.array(assets.sample_points(test_samples)).T
    expected = model["a"] * xs + model["b"]
    assert sorted(predictions) == pytest.approx(sorted(expected.tolist()))
    assert perf == pytest.approx(-float(np.mean((ys - expected) ** 2)))
    assert -0.1 < perf < 0


def test_a_bad_model_scores_lower(run, sandbox, extracted, test_samples, tmp_path):
    bad = tmp_path / "bad_model"
    bad.write_text(json.dumps({"a": -1.0, "b": 0.0}))
    perf, _ = predict_and_score(run, sandbox, extracted, extracted("algo"), bad, test_samples)
    assert perf < -1


def test_train_starts_from_the_average_of_its_input_models(
    run, sandbox, extracted, train_samples, tmp_path
):
    m1, m2 = tmp_path / "m1", tmp_path / "m2"
    m1.write_text(json.dumps({"a": 0.0, "b": 0.0}))
    m2.write_text(json.dumps({"a": 4.0, "b": 4.0}))

    result, out = train(run, sandbox, extracted("algo"), train_samples, {"k1": m1, "k2": m2})

    assert result.ok, result.log
    a, b = fit(assets.sample_points(train_samples))
    assert json.loads(out.read_text()) == pytest.approx({"a": (a + 2) / 2, "b": (b + 2) / 2})


def test_aggregate_averages_two_models(run, sandbox, extracted, tmp_path):
    m1, m2 = tmp_path / "m1", tmp_path / "m2"
    m1.write_text(json.dumps({"a": 1.0, "b": 3.0}))
    m2.write_text(json.dumps({"a": 3.0, "b": -1.0, "only_here": 7}))
    box = sandbox("aggregate")
    models_dir = ex.prepare_models_dir(box, {"first": m1, "second": m2})
    out = box / "output_model"

    argv = ex.aggregate_args(["first", "second"], 2, models_dir, out, box / "agg.log")
    result = run(argv, extracted("aggregate_algo"), box)

    assert result.ok, result.log
    assert "rank 2: aggregated 2 models" in result.log
    assert json.loads(out.read_text()) == {"a": 2.0, "b": 1.0}


def test_composite_train_then_train_again_then_predict(
    run, sandbox, extracted, train_samples, test_samples
):
    script = extracted("composite_algo")
    opener = assets.opener_path()

    # When a first composite traintuple runs without input models
    box = sandbox("composite1")
    data = ex.prepare_data_samples_dir(box, train_samples)
    inputs = ex.prepare_models_dir(box, {})
    outputs = box / "out_models"
    outputs.mkdir()
    argv = ex.composite_train_args(0, None, None, inputs, outputs, "head", "trunk", data, opener)
    result = run(argv, script, box)

    # Then the trunk holds the slope and the head the intercept
    assert result.ok, result.log
    a, b = fit(assets.sample_points(train_samples))
    head = json.loads((outputs / "head").read_text())
    trunk = json.loads((outputs / "trunk").read_text())
    assert trunk == pytest.approx({"a": a}) and head == pytest.approx({"b": b})

    # When a second one starts from them
    box2 = sandbox("composite2")
    data2 = ex.prepare_data_samples_dir(box2, train_samples)
    inputs2 = ex.prepare_models_dir(box2, {"h": outputs / "head", "t": outputs / "trunk"})
    outputs2 = box2 / "out_models"
    argv = ex.composite_train_args(
        1, "h", "t", inputs2, outputs2, "new_head", "new_trunk", data2, opener, log_path=box2 / "l"
    )
    result = run(argv, script, box2)
    assert result.ok, result.log
    assert json.loads((outputs2 / "new_trunk").read_text()) == pytest.approx({"a": a})
    assert json.loads((outputs2 / "new_head").read_text()) == pytest.approx({"b": b})

    # And a composite testtuple predicts with head + trunk and gets scored
    box3 = sandbox("composite_test")
    data3 = ex.prepare_data_samples_dir(box3, test_samples)
    inputs3 = ex.prepare_models_dir(box3, {"h": outputs2 / "new_head", "t": outputs2 / "new_trunk"})
    pred = box3 / "predictions.json"
    result = run(ex.composite_predict_args("h", "t", inputs3, data3, opener, pred), script, box3)
    assert result.ok, result.log
    perf_path = box3 / "perf.json"
    result = run(ex.metrics_args(pred, perf_path, data3, opener), extracted("metrics"), box3)
    assert result.ok, result.log
    assert -0.1 < ex.read_perf(perf_path) < 0


def test_aggregate_accepts_composite_trunks(run, sandbox, extracted, tmp_path):
    t1, t2 = tmp_path / "t1", tmp_path / "t2"
    t1.write_text(json.dumps({"a": 1.0}))
    t2.write_text(json.dumps({"a": 2.0}))
    box = sandbox("agg")
    models_dir = ex.prepare_models_dir(box, {"t1": t1, "t2": t2})
    out = box / "out"
    result = run(
        ex.aggregate_args(["t1", "t2"], 1, models_dir, out, box / "l"),
        extracted("aggregate_algo"),
        box,
    )
    assert result.ok, result.log
    assert json.loads(out.read_text()) == {"a": 1.5}


def test_failing_algo_fails_with_its_exception_in_the_log(run, sandbox, extracted, train_samples):
    result, out = train(run, sandbox, extracted("failing_algo"), train_samples)

    assert not result.ok
    assert result.error == "exit code 1" and result.returncode == 1
    assert "Traceback" in result.log
    assert f"RuntimeError: {assets.FAILURE_MESSAGE}" in result.log
    assert not out.exists()


def test_sleeping_algo_trains_after_a_short_sleep(run, sandbox, extracted, train_samples):
    result, out = train(run, sandbox, extracted("sleeping_algo", sleep=0.2), train_samples)

    assert result.ok, result.log
    assert "sleeping 0.2s" in result.log
    assert result.duration >= 0.2
    assert set(json.loads(out.read_text())) == {"a", "b"}


def test_sleeping_algo_duration_can_come_from_the_environment(
    run, sandbox, extracted, train_samples, monkeypatch
):
    monkeypatch.setenv("SLEEPING_ALGO_SECONDS", "0.1")
    result, _ = train(run, sandbox, extracted("sleeping_algo", sleep=600), train_samples)
    assert result.ok, result.log
    assert "sleeping 0.1s" in result.log


def test_a_step_can_read_a_tar_or_zip_archive_alike(run, sandbox, extracted, train_samples):
    for fmt in ("tar", "zip", "tar.gz"):
        result, out = train(run, sandbox, extracted("algo", fmt=fmt), train_samples, name=fmt)
        assert result.ok, result.log
