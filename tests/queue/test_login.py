"""Workers given node credentials log in, and log in again when their token expires."""

from __future__ import annotations

import time

import pytest

from tests.assets import description_path, make_algo_archive, opener_path
from tests.support.node_process import start_node
from tests.support.stack import redis_dump

PUBLIC = {"public": True, "authorized_ids": []}
PASSWORD = "login-test-password-7f3a"


@pytest.mark.timeout(120)
def test_an_expired_token_is_renewed_by_logging_in_again(
    settings, submitter, start_worker, rclient, tmp_path
):
    # Given a node whose tokens live 2 s, and a worker holding credentials, not a token
    node = start_node(
        tmp_path / "node",
        users=(f"worker:{PASSWORD}",),
        env={"SUBSTRA_WORKER_TOKEN_TTL": "2"},
    )
    try:
        worker = start_worker(
            settings, None, node_url=node.url, node_username="worker", node_password=PASSWORD
        )
        first = submitter.add_dataset(
            {
                "name": "numbers",
                "type": "csv",
                "data_opener": str(opener_path()),
                "description": str(description_path("# login test\n")),
                "permissions": PUBLIC,
            }
        )
        first.wait(timeout=60)

        # When the worker's token has expired and another job runs
        time.sleep(3)
        second = submitter.add_algo(
            {
                "name": "algo",
                "file": str(make_algo_archive("algo", tmp_path / "archives")),
                "description": str(description_path("# login test algo\n")),
                "permissions": PUBLIC,
            }
        )
        result = second.wait(timeout=60)

        # Then it succeeds in one attempt, after a fresh login, and the password is nowhere
        assert result["key"]
        assert [a["outcome"] for a in second.refresh().attempts] == ["succeeded"]
        assert PASSWORD not in redis_dump(rclient)
        assert PASSWORD not in worker.log_text()
    finally:
        node.stop()
