"""channel.json parsing: every way a channel can be wrong has a clear reason."""

from __future__ import annotations

import hashlib
import json

import pytest

from substra_worker.watcher.channel import ChannelError, load_channel

KEY = "a" * 64


def write(channel, config) -> None:
    channel.mkdir(parents=True, exist_ok=True)
    text = config if isinstance(config, str) else json.dumps(config)
    (channel / "channel.json").write_text(text)


def test_dataset_keys(tmp_path):
    write(
        tmp_path / "c", {"dataset_keys": [KEY, KEY, "b" * 64], "test_only": True, "batch_size": 7}
    )
    ch = load_channel(tmp_path / "c", default_batch_size=50)
    assert ch.dataset_keys == (KEY, "b" * 64)
    assert ch.test_only and ch.local and ch.batch_size == 7
    assert not ch.registers_dataset
    assert ch.reserved == {"channel.json"}


def test_single_key_and_defaults(tmp_path):
    write(tmp_path / "c", {"dataset_key": KEY, "mode": "server_path"})
    ch = load_channel(tmp_path / "c", default_batch_size=50)
    assert ch.dataset_keys == (KEY,)
    assert not ch.local and ch.batch_size == 50 and not ch.test_only


def test_dataset_description(tmp_path):
    channel = tmp_path / "c"
    (channel / "dataset").mkdir(parents=True)
    (channel / "dataset" / "opener.py").write_text("print('opener')\n")
    (channel / "description.md").write_text("# d\n")
    write(
        channel,
        {
            "dataset": {
                "name": "n",
                "type": "csv",
                "data_opener": "dataset/opener.py",
                "description": "description.md",
            }
        },
    )
    ch = load_channel(channel, default_batch_size=50)
    assert ch.registers_dataset
    assert ch.dataset_keys == (hashlib.sha256(b"print('opener')\n").hexdigest(),)
    assert ch.reserved == {"channel.json", "dataset", "description.md"}
    assert ch.dataset["permissions"] == {"public": True, "authorized_ids": []}
    assert ch.dataset["data_opener"] == str((channel / "dataset" / "opener.py").resolve())


@pytest.mark.parametrize(
    ("config", "reason"),
    [
        (None, "channel has no channel.json"),
        ("{not json", "not valid JSON"),
        ("[1]", "must hold a JSON object"),
        ({}, "give exactly one of dataset_keys, dataset_key or dataset"),
        ({"dataset_key": KEY, "dataset_keys": [KEY]}, "exactly one"),
        ({"dataset_key": "xyz"}, "dataset_key: must be a 64-character"),
        ({"dataset_keys": []}, "dataset_keys"),
        ({"dataset_key": KEY, "mode": "ftp"}, "mode: Must be one of"),
        ({"dataset_key": KEY, "batch_size": 0}, "batch_size"),
        ({"dataset_key": KEY, "token": "secret"}, "token: Unknown field"),
        (
            {"dataset": {"name": "n", "type": "t", "data_opener": "nope.py", "description": "d"}},
            "dataset.data_opener: 'nope.py' is not a file",
        ),
        ({"dataset": {"name": "n"}}, "dataset.type: Missing data"),
    ],
)
def test_bad_configs(tmp_path, config, reason):
    channel = tmp_path / "c"
    channel.mkdir()
    if config is not None:
        write(channel, config)
    with pytest.raises(ChannelError) as info:
        load_channel(channel, default_batch_size=50)
    assert reason in info.value.reason
