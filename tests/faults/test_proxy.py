"""The fault proxy itself: what each rule does to requests between a client and the node."""

from __future__ import annotations

import threading
import time

import pytest
import requests

from substra_worker import Client
from substra_worker.sdk import exceptions as sdk
from tests.assets import make_sample_folders
from tests.faults.proxy import FaultProxy, Rule
from tests.faults.workload import dataset_data

pytestmark = pytest.mark.timeout(60)


def test_rules_inject_their_faults_and_the_rest_goes_through(node, tmp_path):
    direct = Client(url=node.url, token=node.token)
    with FaultProxy(node.url) as proxy:
        client = Client(url=proxy.url, token=node.token, retry_timeout=0)
        # no rule: a plain hop (keep-alive, JSON and multipart bodies both ways)
        dataset = client.add_dataset(dataset_data(tmp_path, "proxy"))
        assert client.get_dataset(dataset["key"])["key"] == dataset["key"]

        # "answer": the node never sees the request
        proxy.set_rules(Rule("no", "answer", status=503, method=None, first=1))
        with pytest.raises(sdk.GatewayUnavailable):
            client.list_algo()
        assert client.list_algo() == []  # only the first request of that path

        # "after": the node did the work, the client hears 408 with the key
        folders = make_sample_folders(tmp_path / "s", 2, prefix="proxy")
        proxy.set_rules(Rule("408", "after", status=408, first=1))
        with pytest.raises(sdk.RequestTimeout) as info:
            client.add_data_sample({"path": str(folders[0]), "data_manager_keys": [dataset["key"]]})
        assert [s["key"] for s in direct.list_data_sample()] == [info.value.pkhash]

        # "after" 500: done, but the client hears a server error
        proxy.set_rules(Rule("500", "after", status=500, first=1))
        with pytest.raises(sdk.InternalServerError):
            client.add_data_sample({"path": str(folders[1]), "data_manager_keys": [dataset["key"]]})
        assert len(direct.list_data_sample()) == 2
        assert proxy.injected == {"no": 1, "408": 1, "500": 1}


def test_slow_hold_throttle_and_fraction(node):
    headers = node.headers
    with FaultProxy(node.url) as proxy:
        # "slow": the answer comes after the client's timeout
        proxy.set_rules(Rule("slow", "slow", method="GET", delay=2.0, first=1))
        with pytest.raises(requests.Timeout):
            requests.get(f"{proxy.url}/algo/", headers=headers, timeout=0.5)

        # "hold": no answer until released
        hold = Rule("hold", "hold", method="GET", first=1)
        proxy.set_rules(hold)
        answers: list[int] = []
        thread = threading.Thread(
            target=lambda: answers.append(
                requests.get(f"{proxy.url}/algo/", headers=headers, timeout=10).status_code
            )
        )
        thread.start()
        time.sleep(0.5)
        assert answers == []
        hold.release()
        thread.join(10)
        assert answers == [200]

        # "throttle": a body goes through at the given rate, visibly in progress
        proxy.set_rules(Rule("throttle", "throttle", path="/algo/", rate=200_000))
        started = time.monotonic()
        response = requests.post(
            f"{proxy.url}/algo/",
            headers=headers,
            files={"file": ("a.zip", b"x" * 300_000)},
            timeout=20,
        )
        assert response.status_code == 400  # not an archive: the node read it all
        assert time.monotonic() - started >= 1.2
        assert proxy.in_flight() == []

        # a fraction is seeded: the same rule picks the same requests
        picks = []
        for _ in range(2):
            rule = Rule("f", "answer", method=None, fraction=0.3, seed=7)
            picks.append([rule.picks("GET", "/algo/", 0) for _ in range(50)])
        assert picks[0] == picks[1] and 5 < sum(picks[0]) < 25
