"""The job commands (submit, job, jobs, retry, cancel, purge) on a real Redis, worker and node."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import redis

from substra_worker.sdk import Client
from substra_worker.submitter import Submitter
from tests.assets import (
    description_path,
    make_algo_archive,
    make_sample_folders,
    opener_path,
)
from tests.ops.conftest import VENV_BIN, clean_env, run_cli

PUBLIC = {"public": True, "authorized_ids": []}
MISSING_KEY = "f" * 64


def dataset_payload(name: str = "cli numbers", variant: int = 0, tmp: Path | None = None) -> dict:
    return {
        "name": name,
        "type": "csv",
        "data_opener": str(opener_path(tmp, variant=variant)),
        "description": str(description_path(f"# {name}\n")),
        "permissions": PUBLIC,
    }


def write(path: Path, data: object) -> str:
    path.write_text(json.dumps(data))
    return str(path)


def job_keys(url: str) -> list[str]:
    client = redis.Redis.from_url(url, decode_responses=True)
    try:
        return [k for k in client.keys("sw:job:*")]
    finally:
        client.close()


@pytest.fixture
def cli(cli_factory, redis_url, ops_worker):
    return cli_factory(redis_url)


@pytest.fixture
def idle_cli(cli_factory, idle_redis_url):
    return cli_factory(idle_redis_url)


# --- submit ----------------------------------------------------------------------------------


def test_submit_wait_registers_the_asset_and_prints_the_record_as_json(cli, ops_node, tmp_path):
    file = write(tmp_path / "dataset.json", dataset_payload())

    result = cli("submit", "add_dataset", file, "--exist-ok", "--wait", "--json")

    assert result.exit_code == 0, result.output + result.stderr
    record = json.loads(result.stdout)
    assert record["state"] == "succeeded" and record["producer"] == "cli"
    key = record["result"]["key"]
    assert re.fullmatch(r"[0-9a-f]{64}", key)
    with Client(url=ops_node.url, token=ops_node.token) as client:
        assert client.get_dataset(key)["name"] == "cli numbers"

    # the human form of the same job, found by a prefix of its id
    shown = cli("job", record["id"][:10])
    assert shown.exit_code == 0, shown.stderr
    assert record["id"] in shown.stdout and key in shown.stdout and "succeeded" in shown.stdout


def test_submit_reads_stdin_and_without_wait_prints_the_queued_job(cli, tmp_path):
    payload = json.dumps(dataset_payload("from stdin", variant=3, tmp=tmp_path))

    result = cli("submit", "add_dataset", "-", "--json", input=payload)

    assert result.exit_code == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["operation"] == "add_dataset"
    assert record["state"] in {"queued", "running", "succeeded"}
    human = cli("submit", "add_dataset", "-", input=payload)
    assert human.exit_code == 0 and "submitted job" in human.stdout


def test_invalid_payload_exits_2_naming_the_field_and_records_nothing(cli, redis_url, tmp_path):
    bad = dataset_payload()
    del bad["name"]
    bad["permissions"] = {"public": "yes please"}
    file = write(tmp_path / "bad.json", bad)

    result = cli("submit", "add_dataset", file)
    as_json = cli("submit", "add_dataset", file, "--json")

    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "payload.name" in lines[0] and "payload.permissions" in lines[0]
    assert as_json.exit_code == 2
    error = json.loads(as_json.stdout)["error"]
    assert error["code"] == 2 and error["type"] == "InvalidInput"
    assert "payload.name" in error["errors"]
    assert job_keys(redis_url) == []


@pytest.mark.parametrize(
    ("content", "field"),
    [
        ('{"name": ', "line 1"),
        ("[]", "non-empty list"),
        ('[{"name": "a"}, 3]', "item [1]"),
        ('"a string"', "JSON object"),
    ],
)
def test_malformed_files_exit_2_with_one_line(cli, redis_url, tmp_path, content, field):
    path = tmp_path / "file.json"
    path.write_text(content)

    result = cli("submit", "add_dataset", str(path))

    assert result.exit_code == 2, result.output
    assert result.stderr.count("\n") == 1 and field in result.stderr
    assert job_keys(redis_url) == []


def test_usage_errors_exit_2(cli, tmp_path):
    file = write(tmp_path / "dataset.json", dataset_payload())

    unknown = cli("submit", "add_nothing", file)
    local = cli("submit", "add_dataset", file, "--no-local")
    follow = cli("submit", "add_dataset", file, "--follow")
    missing = cli("submit", "add_dataset", str(tmp_path / "nowhere.json"))
    timeout = cli("submit", "add_dataset", file, "--timeout", "3")

    assert unknown.exit_code == 2 and "operation" in unknown.stderr
    assert local.exit_code == 2 and "--local" in local.stderr
    assert follow.exit_code == 2 and "follow" in follow.stderr
    assert missing.exit_code == 2 and "nowhere.json" in missing.stderr
    assert timeout.exit_code == 2 and "--timeout" in timeout.stderr
    assert cli("jobs", "--state", "nonsense").exit_code == 2
    assert cli("job", "not-an-id!").exit_code == 2


def test_bulk_submission_with_references_waits_for_every_job(cli, ops_node, tmp_path):
    # Given a dataset job, then a list of sample payloads that refer to it
    dataset = cli(
        "submit",
        "add_dataset",
        write(tmp_path / "d.json", dataset_payload()),
        "--exist-ok",
        "--json",
    )
    dataset_id = json.loads(dataset.stdout)["id"]
    folders = make_sample_folders(tmp_path / "samples", 3, prefix="cli-bulk")
    payloads = [
        {"path": str(f), "data_manager_keys": [f"$job:{dataset_id}"], "test_only": False}
        for f in folders
    ]

    # When they are submitted as one file and waited for
    result = cli(
        "submit", "add_data_sample", write(tmp_path / "bulk.json", payloads),
        "--exist-ok", "--idempotency-key", "bulk-1", "--wait", "--json",
    )  # fmt: skip

    # Then every job succeeded, in the file's order, each with its own key
    assert result.exit_code == 0, result.stderr
    records = json.loads(result.stdout)
    assert [r["state"] for r in records] == ["succeeded"] * 3
    assert [r["idempotency_key"] for r in records] == ["bulk-1:0", "bulk-1:1", "bulk-1:2"]
    keys = {r["result"]["key"] for r in records}
    with Client(url=ops_node.url, token=ops_node.token) as client:
        assert keys <= {s["key"] for s in client.list_data_sample()}

    # and the same idempotency keys give the same jobs back
    again = cli(
        "submit", "add_data_sample", str(tmp_path / "bulk.json"),
        "--exist-ok", "--idempotency-key", "bulk-1", "--json",
    )  # fmt: skip
    assert [r["id"] for r in json.loads(again.stdout)] == [r["id"] for r in records]
    human = cli("jobs", "--operation", "add_data_sample")
    assert human.exit_code == 0
    assert all(r["id"][:12] in human.stdout for r in records)


def test_a_failed_job_exits_1_and_retry_queues_it_again(cli, tmp_path):
    payload = {
        "algo_key": MISSING_KEY,
        "data_manager_key": MISSING_KEY,
        "train_data_sample_keys": [MISSING_KEY],
    }
    file = write(tmp_path / "tt.json", payload)

    failed = cli("submit", "add_traintuple", file, "--wait", "--json")

    assert failed.exit_code == 1
    record = json.loads(failed.stdout)
    assert record["state"] == "failed"
    assert record["id"] in failed.stderr and "failed" in failed.stderr
    listed = json.loads(cli("jobs", "--state", "failed", "--json").stdout)
    assert [r["id"] for r in listed] == [record["id"]]

    retried = cli("retry", record["id"], "--json")
    assert retried.exit_code == 0, retried.stderr
    assert json.loads(retried.stdout)["state"] in {"queued", "running", "retrying", "failed"}
    again = cli("job", record["id"], "--wait", "--json")
    assert again.exit_code == 1
    assert json.loads(again.stdout)["attempt_count"] >= 2

    # only failed jobs are retried, and a job that does not exist is exit code 1
    done = cli(
        "submit",
        "add_dataset",
        write(tmp_path / "d.json", dataset_payload()),
        "--exist-ok",
        "--wait",
        "--json",
    )
    done_id = json.loads(done.stdout)["id"]
    refused = cli("retry", done_id)
    assert refused.exit_code == 1 and "only failed jobs" in refused.stderr
    assert cli("job", "0" * 32).exit_code == 1
    assert cli("retry", "0" * 32, "--json").exit_code == 1


def test_follow_waits_for_the_tuple_on_the_node(cli, ops_node, tmp_path):
    # Given a dataset, samples and two algos registered through the queue
    settings = cli_settings(cli)
    with Submitter(settings, producer="cli") as s:
        ds = s.add_dataset(dataset_payload(), exist_ok=True)
        folders = [str(f) for f in make_sample_folders(tmp_path / "s", 2, prefix="cli-follow")]
        samples = s.add_data_samples(
            {"paths": folders, "data_manager_keys": [ds], "test_only": False}, exist_ok=True
        )
        algos = {}
        for kind in ("algo", "failing_algo"):
            algos[kind] = s.add_algo(
                {
                    "name": kind,
                    "file": str(make_algo_archive(kind, tmp_path / "archives")),
                    "description": str(description_path(f"# {kind}\n")),
                    "permissions": PUBLIC,
                },
                exist_ok=True,
            )
        for job in (ds, samples, *algos.values()):
            job.wait(timeout=60)

    def traintuple(kind: str) -> str:
        payload = {
            "algo_key": algos[kind].key,
            "data_manager_key": ds.key,
            "train_data_sample_keys": samples.keys,
        }
        return write(tmp_path / f"{kind}.json", payload)

    # When a traintuple is submitted with --follow
    good = cli("submit", "add_traintuple", traintuple("algo"), "--exist-ok", "--follow", "--json")
    bad = cli("submit", "add_traintuple", traintuple("failing_algo"), "--exist-ok", "--follow")

    # Then the command returns once the tuple is done on the node
    assert good.exit_code == 0, good.stderr
    progress = json.loads(good.stdout)["progress"]
    assert progress["status"] == "done" and progress["final"] is True
    # and a tuple that fails on the node is a failure, though its job succeeded
    assert bad.exit_code == 1
    assert "ended failed on the node" in bad.stderr


def cli_settings(cli):
    from substra_worker.settings import Settings

    return Settings(redis_url=cli.env["SUBSTRA_WORKER_REDIS_URL"])


# --- jobs that no worker runs: cancel, timeout, purge ---------------------------------------


def test_cancel_a_queued_job_and_its_waiters(idle_cli, idle_redis_url, tmp_path):
    file = write(tmp_path / "d.json", dataset_payload())
    first = json.loads(idle_cli("submit", "add_dataset", file, "--json").stdout)
    waiter_payload = {"dataset_key": f"$job:{first['id']}", "objective_key": MISSING_KEY}
    waiter = json.loads(
        idle_cli(
            "submit",
            "link_dataset_with_objective",
            write(tmp_path / "l.json", waiter_payload),
            "--json",
        ).stdout
    )
    assert first["state"] == "queued" and waiter["state"] == "waiting"

    canceled = idle_cli("cancel", first["id"], "--json")

    assert canceled.exit_code == 0, canceled.stderr
    assert json.loads(canceled.stdout)["state"] == "canceled"
    after = json.loads(idle_cli("job", waiter["id"], "--json").stdout)
    assert after["state"] == "failed" and after["error"]["type"] == "ReferenceFailed"
    again = idle_cli("cancel", first["id"])
    assert again.exit_code == 1 and "canceled" in again.stderr


def test_wait_timeout_exits_4(idle_cli, tmp_path):
    file = write(tmp_path / "d.json", dataset_payload())

    result = idle_cli("submit", "add_dataset", file, "--wait", "--timeout", "0.5", "--json")

    assert result.exit_code == 4
    assert json.loads(result.stdout)["state"] == "queued"
    assert "not finished after 0.5s" in result.stderr


def test_purge_says_what_it_removes_and_needs_confirmation(idle_cli, idle_redis_url, tmp_path):
    # Given two canceled jobs and one queued job
    ids = []
    for i in range(3):
        payload = dataset_payload(f"purge {i}", variant=10 + i, tmp=tmp_path)
        record = json.loads(
            idle_cli(
                "submit", "add_dataset", write(tmp_path / f"{i}.json", payload), "--json"
            ).stdout
        )
        ids.append(record["id"])
    for job_id in ids[:2]:
        assert idle_cli("cancel", job_id).exit_code == 0

    # What would go is shown, and nothing goes without --yes
    dry = idle_cli("purge", "--dry-run", "--json")
    assert dry.exit_code == 0
    assert json.loads(dry.stdout)["counts"] == {"succeeded": 0, "failed": 0, "canceled": 2}
    unconfirmed = idle_cli("purge")
    assert unconfirmed.exit_code == 2
    assert "canceled" in unconfirmed.stdout and "--yes" in unconfirmed.stderr
    declined = idle_cli("purge", input="n\n")
    assert declined.exit_code == 2  # no terminal: never prompts, never deletes
    assert len(json.loads(idle_cli("jobs", "--json").stdout)) == 3

    # With --yes the canceled records go, the queued job stays
    purged = idle_cli("purge", "--state", "canceled", "--yes", "--json")
    assert purged.exit_code == 0, purged.stderr
    assert json.loads(purged.stdout)["deleted"] == 2
    assert [r["id"] for r in json.loads(idle_cli("jobs", "--json").stdout)] == [ids[2]]
    assert idle_cli("job", ids[0]).exit_code == 1
    assert idle_cli("purge", "--older-than", "soon").exit_code == 2
    assert idle_cli("purge", "--state", "queued").exit_code == 2


# --- reaching Redis --------------------------------------------------------------------------


def test_no_redis_configured_is_exit_3_in_one_line(cli_factory):
    cli = cli_factory(None)

    for args in (("jobs",), ("job", "0" * 32), ("purge", "--yes"), ("retry", "0" * 32)):
        result = cli(*args)
        assert result.exit_code == 3, (args, result.output)
        assert result.stderr.count("\n") == 1
        assert "SUBSTRA_WORKER_REDIS_URL" in result.stderr and "substra-worker up" in result.stderr


def test_unreachable_redis_is_exit_3_and_names_runtime_json(cli_factory, tmp_path):
    from substra_worker.redis_server import free_port

    # a runtime.json left by an `up` that is not running any more
    cli = cli_factory(None)
    state = cli.cwd / ".substra-worker"
    state.mkdir(parents=True, exist_ok=True)
    (state / "runtime.json").write_text(
        json.dumps({"redis_url": f"redis://127.0.0.1:{free_port()}/0"})
    )

    result = cli("jobs", "--json")

    assert result.exit_code == 3
    assert "runtime.json" in result.stderr and "still running" in result.stderr
    assert json.loads(result.stdout)["error"]["code"] == 3
    password_url = cli_factory(f"redis://:s3cret@127.0.0.1:{free_port()}/0")
    hidden = password_url("jobs")
    assert hidden.exit_code == 3 and "s3cret" not in hidden.stderr


# --- the installed entry point ---------------------------------------------------------------


def test_entry_point_exit_codes_and_help(redis_url, ops_worker, tmp_path):
    env = clean_env(redis_url=redis_url)
    file = write(tmp_path / "d.json", dataset_payload())
    bad = write(tmp_path / "bad.json", {"name": "x"})

    ok = run_cli("submit", "add_dataset", file, "--exist-ok", "--wait", cwd=tmp_path, env=env)
    invalid = run_cli("submit", "add_dataset", bad, cwd=tmp_path, env=env)
    helped = run_cli("submit", "--help", cwd=tmp_path, env=env)

    assert ok.returncode == 0, ok.stderr
    assert "succeeded" in ok.stdout
    assert invalid.returncode == 2
    assert invalid.stderr.count("\n") == 1 and "payload.type" in invalid.stderr
    assert "Exit codes" in helped.stdout and "4  --timeout" in helped.stdout
    assert (VENV_BIN / "substra-worker").exists()
