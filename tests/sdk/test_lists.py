"""Filter encoding on the wire, and list answers flattened without duplicates."""

from __future__ import annotations

from urllib.parse import parse_qs

import pytest

from substra_worker.sdk import filters

from .conftest import key
from .scripted_server import Reply


def test_filters_are_sent_as_the_raw_double_quoted_search(client, server):
    server.script("GET", "/algo/", Reply(200, [[]]))
    wanted = ["algo:name:ABC DEF", "OR", "algo:owner:MyOrg1MSP", "algo:name:a/b"]

    client.list_algo(wanted)

    r = server.only()
    assert r.query == (
        "search=algo%3Aname%3AABC%252520DEF-OR-algo%3Aowner%3AMyOrg1MSP%2Calgo%3Aname%3Aa/b"
    )
    assert r.query == filters.query_string(wanted)
    # what a node decodes from it
    (search,) = parse_qs(r.query)["search"]
    assert filters.parse_search(search) == [
        [("algo", "name", "ABC DEF")],
        [("algo", "owner", "MyOrg1MSP"), ("algo", "name", "a/b")],
    ]


def test_data_sample_list_sends_its_filters_too(client, server):
    server.script("GET", "/data_sample/", Reply(200, []))
    client.list_data_sample(["data_sample:owner:x"])
    assert server.only().query == "search=data_sample%3Aowner%3Ax"


@pytest.mark.parametrize("bad", ["algo:name:x", {"algo": "x"}, ("algo:name:x",)])
def test_a_filter_that_is_not_a_list_is_a_value_error_and_sends_nothing(client, server, bad):
    with pytest.raises(ValueError):
        client.list_algo(bad)
    assert server.requests == []


def test_an_empty_filter_list_sends_no_query(client, server):
    server.script("GET", "/traintuple/", Reply(200, [[]]))
    assert client.list_traintuple([]) == []
    assert server.only().query == ""


def test_or_groups_are_flattened_and_deduplicated_in_order(client, server):
    a, b, c = ({"key": key(x), "name": x} for x in "abc")
    server.script("GET", "/objective/", Reply(200, [[a, b], [b, c], [a]]))
    assert client.list_objective(["objective:name:a", "OR", "objective:name:c"]) == [a, b, c]


def test_a_flat_answer_is_kept_as_it_is(client, server):
    s = {"key": key("s"), "owner": "o", "dataManagerKeys": []}
    server.script("GET", "/data_sample/", Reply(200, [s, s]))
    assert client.list_data_sample() == [s, s]
