"""Fault 4: the node behind a fault proxy that answers 503, 408 (after doing the work),
500 (after doing the work), or answers too late (beyond the client's socket timeout)."""

from __future__ import annotations

import pytest

from substra_worker import Client
from tests.faults.conftest import Target
from tests.faults.proxy import Rule
from tests.faults.results import record_scenario
from tests.faults.workload import Workload, check, submit_workload

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

REQUEST_TIMEOUT = 1.5  # seconds: the workers' socket timeout in the "slow" case

FAULTS = {
    "proxy-503": (
        Rule("503 before the node", "answer", status=503, method=None, fraction=0.15, seed=1),
        "Node behind a proxy answering 503 to 15% of requests (not forwarded)",
    ),
    "proxy-408": (
        Rule("408 after the node", "after", status=408, fraction=0.15, seed=2),
        "Node behind a proxy answering 408 with the key to 15% of creates (done, unconfirmed)",
    ),
    "proxy-500": (
        Rule("500 after the node", "after", status=500, method=None, fraction=0.25, seed=3),
        "Node behind a proxy answering 500 to 25% of requests (after the node did them)",
    ),
    "proxy-slow": (
        Rule("answer too late", "slow", method=None, fraction=0.05, delay=3.0, seed=4),
        f"Node behind a proxy holding 5% of answers 3s (socket timeout {REQUEST_TIMEOUT:g}s)",
    ),
}


@pytest.mark.parametrize("scenario", sorted(FAULTS))
def test_node_behind_a_faulty_proxy(
    scenario, settings, submitter, node, proxy_for, start_worker, tmp_path
):
    rule, title = FAULTS[scenario]
    client = Client(url=node.url, token=node.token)
    proxy = proxy_for(node)
    proxy.set_rules(rule)
    # the client sleeps 1s inside a call before re-sending a 503 or a 408: 4 processes
    start_worker(
        settings, Target(proxy.url, node.token), concurrency=4, request_timeout=REQUEST_TIMEOUT
    )

    # Given ~250 jobs through a proxy that injects its fault into a share of the requests
    w = Workload(tmp_path, scenario)
    submit_workload(submitter, tmp_path, scenario, into=w)

    # Then every job ends, each asset once on the node, the doomed ones failed with a reason
    outcome = check(w, client, timeout=150, app=submitter.app)
    injected = proxy.injected[rule.name]
    record_scenario(outcome.row(scenario, title, faults_injected=injected))
    assert outcome.problems == []
    assert (outcome.lost, outcome.duplicated, outcome.orphaned) == (0, 0, 0)
    assert outcome.failed == len(w.doomed)
    assert injected >= 10, proxy.injected
    # the fault reached the jobs: some needed more than one attempt
    repeated = [j for j in w.jobs if len(j.attempts) > 1]
    if rule.action != "answer":  # a 503 is mostly absorbed by the client's own retries
        assert repeated, "no job saw the fault"
    for job in w.jobs:
        if job.id in w.doomed:
            assert "no algo" in job.error["message"], job.error
