"""The command-line builders, checked against substratools 0.6.1's own argparse parsers."""

from __future__ import annotations

import json
import warnings
from importlib.metadata import version

import pytest

from substra_worker.node import executor as ex

with warnings.catch_warnings():
    # substratools 0.6.1 imports the deprecated `imp` module
    warnings.simplefilter("ignore", DeprecationWarning)
    from substratools import algo as tools_algo
    from substratools import metrics as tools_metrics


def test_substratools_is_the_pinned_version():
    assert version("substratools") == "0.6.1"


def algo_parser():
    return tools_algo._generate_algo_cli(object())


def test_train_args():
    argv = ex.train_args(["m1", "m2"], 3, "/d", "/m", "/out/model", "/o/opener.py", "/l/log")
    assert argv == [
        "train",
        "m1",
        "m2",
        "--rank",
        "3",
        "--data-samples-path",
        "/d",
        "--models-path",
        "/m",
        "--output-model-path",
        "/out/model",
        "--opener-path",
        "/o/opener.py",
        "--log-path",
        "/l/log",
    ]
    args = algo_parser().parse_args(argv)
    assert args.func.__name__ == "_train"
    assert args.models == ["m1", "m2"] and args.rank == 3
    assert (args.data_samples_path, args.models_path, args.output_model_path) == (
        "/d",
        "/m",
        "/out/model",
    )
    assert (args.opener_path, args.log_path, args.fake_data) == ("/o/opener.py", "/l/log", False)


def test_train_args_without_input_models():
    args = algo_parser().parse_args(ex.train_args([], 0, "/d", "/m", "/o", "/op", "/l"))
    assert args.models == [] and args.rank == 0


def test_predict_args():
    argv = ex.predict_args("model", "/m", "/d", "/op.py", "/p/pred")
    args = algo_parser().parse_args(argv)
    assert args.func.__name__ == "_predict"
    assert (args.model, args.models_path, args.data_samples_path) == ("model", "/m", "/d")
    assert (args.opener_path, args.output_predictions_path) == ("/op.py", "/p/pred")


def test_aggregate_args():
    argv = ex.aggregate_args(["a", "b", "c"], 5, "/m", "/out", "/log")
    args = tools_algo._generate_aggregate_algo_cli(object()).parse_args(argv)
    assert args.func.__name__ == "_aggregate"
    assert args.models == ["a", "b", "c"] and args.rank == 5
    assert (args.models_path, args.output_model_path, args.log_path) == ("/m", "/out", "/log")


def composite_parser():
    return tools_algo._generate_composite_algo_cli(object())


@pytest.mark.parametrize(("head", "trunk"), [(None, None), ("h", "t"), ("h", None), (None, "t")])
def test_composite_train_args(head, trunk):
    argv = ex.composite_train_args(2, head, trunk, "/in", "/out", "oh", "ot", "/d", "/op.py")
    args = composite_parser().parse_args(argv)
    assert args.func.__name__ == "_train" and args.rank == 2
    assert (args.input_head_model_filename, args.input_trunk_model_filename) == (head, trunk)
    assert (args.input_models_path, args.output_models_path) == ("/in", "/out")
    assert (args.output_head_model_filename, args.output_trunk_model_filename) == ("oh", "ot")
    assert (args.data_samples_path, args.opener_path, args.log_path) == ("/d", "/op.py", None)


def test_composite_train_args_with_a_log_path():
    argv = ex.composite_train_args(0, None, None, "/i", "/o", "h", "t", "/d", "/op", log_path="/l")
    assert composite_parser().parse_args(argv).log_path == "/l"


def test_composite_predict_args():
    argv = ex.composite_predict_args("h", "t", "/in", "/d", "/op.py", "/pred")
    args = composite_parser().parse_args(argv)
    assert args.func.__name__ == "_predict"
    assert (args.input_head_model_filename, args.input_trunk_model_filename) == ("h", "t")
    assert (args.input_models_path, args.data_samples_path) == ("/in", "/d")
    assert (args.opener_path, args.output_predictions_path) == ("/op.py", "/pred")


def test_metrics_args():
    argv = ex.metrics_args("/pred", "/perf.json", "/d", "/op.py")
    args = tools_metrics._generate_cli().parse_args(argv)
    assert tools_metrics.FakeDataMode.from_str(args.fake_data_mode) == 0  # DISABLED
    assert (args.input_predictions_path, args.output_perf_path) == ("/pred", "/perf.json")
    assert (args.data_samples_path, args.opener_path, args.fake_data) == ("/d", "/op.py", False)
    argv = ex.metrics_args("/p", "/f", "/d", "/o", log_path="/l")
    assert tools_metrics._generate_cli().parse_args(argv).log_path == "/l"


def test_paths_may_be_path_objects(tmp_path):
    argv = ex.train_args(
        [], 0, tmp_path / "d", tmp_path / "m", tmp_path / "o", tmp_path / "x", tmp_path / "l"
    )
    assert all(isinstance(a, str) for a in argv)
    assert str(tmp_path / "d") in argv


def test_read_perf(tmp_path):
    path = tmp_path / "perf.json"
    path.write_text(json.dumps({"all": -0.25}))
    assert ex.read_perf(path) == -0.25
    path.write_text(json.dumps({"all": 3}))
    assert ex.read_perf(path) == 3.0 and isinstance(ex.read_perf(path), float)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no perf file"),
        ("not json", "unreadable"),
        ('{"score": 1}', "is not"),
        ("[1]", "is not"),
        ('{"all": "0.5"}', "not a number"),
        ('{"all": true}', "not a number"),
        ('{"all": NaN}', "not finite"),
        ('{"all": Infinity}', "not finite"),
    ],
)
def test_read_perf_refuses_what_is_not_a_score(tmp_path, content, message):
    path = tmp_path / "perf.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ValueError, match=message):
        ex.read_perf(path)
