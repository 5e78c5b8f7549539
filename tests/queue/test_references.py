"""The reference form: parsing, placeholders for validation, resolution (with splicing)."""

from __future__ import annotations

import re

import pytest

from substra_worker.references import (
    BadReference,
    Ref,
    find_refs,
    make_ref,
    parse_ref,
    resolve,
    with_placeholders,
)

A = "a" * 32
B = "b" * 32
KEY = "1" * 64


def test_parse_and_make_round_trip():
    assert parse_ref(make_ref(A)) == Ref(A)
    assert parse_ref(make_ref(A, "id_to_key.train-1")) == Ref(A, "id_to_key.train-1")
    assert parse_ref("a plain tag") is None
    assert parse_ref(42) is None
    with pytest.raises(BadReference):
        parse_ref("$job:not-an-id")


def test_find_refs_in_nested_payloads_without_duplicates():
    payload = {
        "data_manager_key": make_ref(A),
        "train_data_sample_keys": [make_ref(B), make_ref(A)],
        "metadata": {"note": "$job is a word here"},
    }
    assert find_refs(payload) == [Ref(A), Ref(B)]


def test_placeholders_are_distinct_64_hex_keys():
    out = with_placeholders({"k": make_ref(A), "ks": [make_ref(B), "x"]})
    assert re.fullmatch("[0-9a-f]{64}", out["k"])
    assert re.fullmatch("[0-9a-f]{64}", out["ks"][0]) and out["ks"][0] != out["k"]
    assert out["ks"][1] == "x"


def test_resolve_keys_paths_and_splicing():
    results = {
        A: {"key": KEY, "answer": {"IDToKey": {"t1": "2" * 64}}},
        B: {"key": None, "keys": ["3" * 64, "4" * 64]},
    }
    payload = {
        "data_manager_key": make_ref(A),
        "train_data_sample_keys": ["5" * 64, make_ref(B)],
        "in_models_keys": [make_ref(A, "answer.IDToKey.t1")],
        "first": make_ref(B, "keys.0"),
        "tag": "kept",
    }
    assert resolve(payload, results) == {
        "data_manager_key": KEY,
        "train_data_sample_keys": ["5" * 64, "3" * 64, "4" * 64],
        "in_models_keys": ["2" * 64],
        "first": "3" * 64,
        "tag": "kept",
    }


def test_resolve_errors_name_the_reference():
    results = {A: {"key": None, "keys": ["3" * 64, "4" * 64]}, B: {"key": None}}
    with pytest.raises(BadReference, match="2 keys"):
        resolve({"data_manager_key": make_ref(A)}, results)
    with pytest.raises(BadReference, match=B):
        resolve({"k": make_ref(B)}, results)
    with pytest.raises(BadReference, match="no 'nope'"):
        resolve({"k": make_ref(A, "nope")}, results)
