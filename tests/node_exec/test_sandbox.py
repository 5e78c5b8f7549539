"""The sandbox helpers: data-sample and model folders as substratools expects them."""

from __future__ import annotations

import pytest

from substra_worker.node import executor as ex
from tests import assets


def test_data_samples_dir_from_a_mapping(tmp_path):
    folders = assets.make_sample_folders(tmp_path / "s", 2)
    data = ex.prepare_data_samples_dir(tmp_path / "box", {"k1": folders[0], "k2": folders[1]})
    assert data == tmp_path / "box" / "data"
    assert sorted(p.name for p in data.iterdir()) == ["k1", "k2"]
    assert (data / "k1").is_symlink() and (data / "k1").resolve() == folders[0].resolve()
    assert (data / "k2" / assets.SAMPLE_FILE).read_text() == (
        folders[1] / assets.SAMPLE_FILE
    ).read_text()


def test_data_samples_dir_from_a_list_with_clashing_leaf_names(tmp_path):
    a = assets.make_sample_folders(tmp_path / "a", 1)[0]
    b = assets.make_sample_folders(tmp_path / "b", 1, seed=2)[0]
    assert a.name == b.name
    data = ex.prepare_data_samples_dir(tmp_path / "box", [a, b], name="samples")
    assert sorted(p.name for p in data.iterdir()) == ["00000_sample0", "00001_sample0"]


def test_data_samples_dir_from_a_list(tmp_path):
    folders = assets.make_sample_folders(tmp_path / "s", 3)
    data = ex.prepare_data_samples_dir(tmp_path / "box", folders)
    assert sorted(p.name for p in data.iterdir()) == ["sample0", "sample1", "sample2"]


def test_a_missing_sample_folder_is_refused(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        ex.prepare_data_samples_dir(tmp_path / "box", {"k": tmp_path / "missing"})
    with pytest.raises(ValueError, match="invalid"):
        ex.prepare_data_samples_dir(tmp_path / "box2", {"../x": tmp_path})


def test_models_dir_copies_by_default(tmp_path):
    stored = tmp_path / "store" / "abc"
    stored.parent.mkdir()
    stored.write_text('{"a": 1}')
    models = ex.prepare_models_dir(tmp_path / "box", {"in_model": stored})
    assert models == tmp_path / "box" / "models"
    (models / "in_model").write_text("overwritten by the step")
    assert stored.read_text() == '{"a": 1}'


def test_models_dir_can_link(tmp_path):
    stored = tmp_path / "abc"
    stored.write_text("m")
    models = ex.prepare_models_dir(tmp_path / "box", {"x": stored}, "in", link=True)
    assert (models / "x").is_symlink() and (models / "x").read_text() == "m"


def test_bad_models_are_refused(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        ex.prepare_models_dir(tmp_path / "box", {"x": tmp_path / "missing"})
    with pytest.raises(ValueError, match="invalid"):
        ex.prepare_models_dir(tmp_path / "box", {"a/b": tmp_path})
