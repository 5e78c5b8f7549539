"""The ~/.substra profile file, the ~/.substra-tokens file, and Client.from_config_file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from substra_worker.sdk import Client
from substra_worker.sdk.config import load_profile
from substra_worker.sdk.exceptions import ConfigurationError

from .scripted_server import Reply


def write(path: Path, content: object) -> Path:
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return write(
        tmp_path / "substra.json",
        {
            "default": {"url": "http://default:8000", "version": "0.0", "insecure": False},
            "node2": {"url": "http://node2:8000", "version": "1.0", "insecure": True},
            "bare": {"url": "http://bare"},
        },
    )


@pytest.fixture
def tokens(tmp_path: Path) -> Path:
    return write(tmp_path / "tokens.json", {"default": {"token": "tok-default"}})


def test_profile_and_token(config, tokens):
    assert load_profile("default", config, tokens) == {
        "url": "http://default:8000",
        "version": "0.0",
        "insecure": False,
        "token": "tok-default",
    }
    assert load_profile("node2", str(config), str(tokens)) == {
        "url": "http://node2:8000",
        "version": "1.0",
        "insecure": True,
        "token": None,  # no entry in the tokens file
    }


def test_missing_version_and_insecure_take_their_defaults(config, tokens):
    profile = load_profile("bare", config, tokens)
    assert (profile["version"], profile["insecure"]) == ("0.0", False)


def test_missing_tokens_file_means_no_token(config, tmp_path):
    assert load_profile("default", config, tmp_path / "nope.json")["token"] is None


def test_missing_config_file_names_the_file(tmp_path, tokens):
    missing = tmp_path / "absent.json"
    with pytest.raises(ConfigurationError, match="absent.json"):
        load_profile("default", missing, tokens)


def test_missing_profile_names_the_profile_and_the_file(config, tokens):
    with pytest.raises(ConfigurationError, match=r"'ghost'.*substra\.json"):
        load_profile("ghost", config, tokens)


@pytest.mark.parametrize(
    "content", ["{not json", "[1, 2]", json.dumps({"default": {"version": "0.0"}})]
)
def test_malformed_config_is_a_configuration_error(tmp_path, tokens, content):
    with pytest.raises(ConfigurationError):
        load_profile("default", write(tmp_path / "bad.json", content), tokens)


def test_malformed_tokens_file_is_a_configuration_error(config, tmp_path):
    with pytest.raises(ConfigurationError, match="tokens.json"):
        load_profile("default", config, write(tmp_path / "tokens.json", "{oops"))


def test_home_relative_paths_are_expanded(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    write(tmp_path / ".substra", {"default": {"url": "http://x"}})
    write(tmp_path / ".substra-tokens", {"default": {"token": "t"}})
    assert load_profile("default", "~/.substra", "~/.substra-tokens")["token"] == "t"


def test_from_config_file_drives_the_profile_node_with_its_token(server, tmp_path):
    cfg = write(tmp_path / "cfg", {"p": {"url": server.url, "version": "0.0", "insecure": False}})
    tok = write(tmp_path / "tok", {"p": {"token": "from-file"}})
    server.script("GET", "/node/", Reply(200, []))

    with Client.from_config_file("p", cfg, tok) as client:
        client.list_node()
    with Client.from_config_file("p", cfg, tok, token="explicit") as client:
        client.list_node()

    first, second = server.requests
    assert first.headers["authorization"] == "Token from-file"
    assert second.headers["authorization"] == "Token explicit"
    assert first.headers["accept"] == "application/json;version=0.0"


def test_from_config_file_missing_profile(config, tokens):
    with pytest.raises(ConfigurationError, match="'ghost'"):
        Client.from_config_file("ghost", config, tokens)
