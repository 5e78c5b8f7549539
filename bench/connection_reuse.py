"""Connection reuse: many ``get_*`` calls with one Client, against a new connection per call.

Ours: N ``Client.get_dataset`` calls on one Client (one ``requests.Session``:
one kept-alive connection). Baselines: N ``requests.get`` calls without a
session (what the reference client did: a connection per call), and N calls
each through a new Client (a fresh session, hence a fresh connection, per call).
All on the same node and the same dataset, answers checked.
"""

from __future__ import annotations

import time

import requests

from bench.data import register_dataset
from bench.measure import BenchError, rate, ratio, summarize
from bench.report import Line, Result
from bench.runner import Context
from bench.stack import Node
from substra_worker import Client

NAME = "connection_reuse"
TITLE = "Connection reuse"
SIZES = {"quick": {"calls": 100, "repeat": 1}, "full": {"calls": 1000, "repeat": 3}}
WARM_UP = 10  # calls before each timed run


def run(ctx: Context) -> Result:
    n = ctx.sizes["calls"]
    node = ctx.started(Node(ctx.work / "node"))
    with node.client() as client:
        dataset = register_dataset(client, ctx.work, "reuse")

    def one_client(count: int) -> None:
        with Client(url=node.url, token=node.token) as client:
            for _ in range(count):
                _check(client.get_dataset(dataset), dataset)

    def plain_get(count: int) -> None:
        url = f"{node.url}/data_manager/{dataset}/"
        for _ in range(count):
            response = requests.get(url, headers=node.headers, timeout=60)
            response.raise_for_status()
            _check(response.json(), dataset)

    def client_per_call(count: int) -> None:
        for _ in range(count):
            with Client(url=node.url, token=node.token) as client:
                _check(client.get_dataset(dataset), dataset)

    runs: dict[str, list[dict]] = {"ours": [], "plain": [], "fresh": []}
    for _ in range(ctx.sizes["repeat"]):  # in turn, so that noise hits them alike
        ctx.log(f"{n} calls, three ways")
        runs["ours"].append(_timed(one_client, n))
        runs["plain"].append(_timed(plain_get, n))
        runs["fresh"].append(_timed(client_per_call, n))
    ours, plain, fresh = (summarize(runs[k], "calls_per_s") for k in ("ours", "plain", "fresh"))
    return Result(
        NAME,
        TITLE,
        ctx.sizes,
        settings={"call": "get_dataset"},
        measured={"one_client": ours},
        baseline={"requests_get_per_call": plain, "client_per_call": fresh},
        lines=[
            Line(
                "one_client_vs_requests_get",
                f"{n} `get_dataset` calls on one Client (kept-alive connection)",
                f"{ours['calls_per_s']:.0f} calls/s",
                f"`requests.get` per call, no session: {plain['calls_per_s']:.0f} calls/s",
                ratio(ours["calls_per_s"], plain["calls_per_s"]),
            ),
            Line(
                "one_client_vs_client_per_call",
                f"{n} `get_dataset` calls on one Client, against a new Client per call",
                f"{ours['calls_per_s']:.0f} calls/s",
                f"new Client per call: {fresh['calls_per_s']:.0f} calls/s",
                ratio(ours["calls_per_s"], fresh["calls_per_s"]),
            ),
        ],
        notes=[f"medians of {ctx.sizes['repeat']} runs of each, run in turn"],
    )


def _check(answer: dict, key: str) -> None:
    if answer.get("key") != key:
        raise BenchError(f"unexpected answer: {str(answer)[:200]}")


def _timed(calls, n: int) -> dict:
    calls(WARM_UP)
    started = time.perf_counter()
    calls(n)
    seconds = time.perf_counter() - started
    return {"seconds": round(seconds, 3), "calls_per_s": round(rate(n, seconds), 1)}
