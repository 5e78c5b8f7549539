"""The /jobs routes over real HTTP: submit, read, list, retry, cancel, and their refusals."""

from __future__ import annotations

import json
from pathlib import Path

import redis

from substra_worker.api.app import MAX_BODY_BYTES
from substra_worker.settings import Settings
from tests.api.stack import ApiClient, dataset_payload, objective_payload, sha256_file

UNKNOWN = "0" * 64
CANCEL = {"operation": "cancel_compute_plan", "payload": {"compute_plan_id": UNKNOWN}}


def _job_keys(settings: Settings) -> list[str]:
    client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    try:
        return [k for k in client.keys("*") if not k.startswith("_kombu.binding")]
    finally:
        client.close()


def test_a_job_submitted_over_http_runs_on_the_node(api: ApiClient, tmp_path: Path, variant: int):
    # Given a dataset payload whose files exist
    payload = dataset_payload(tmp_path, variant)

    # When it is submitted
    response = api.post("/jobs", json={"operation": "add_dataset", "payload": payload})

    # Then the job is recorded and queued, with a Location
    assert response.status_code == 201, response.text
    job = response.json()
    assert job["operation"] == "add_dataset"
    assert job["producer"] == "api"
    assert job["state"] in ("queued", "running", "succeeded")
    assert response.headers["Location"] == f"jobs/{job['id']}"

    # And a worker registers it on the node, with the key the node computes
    done = api.wait(job["id"])
    assert done["state"] == "succeeded", done
    assert done["result"]["key"] == sha256_file(Path(payload["data_opener"]))
    assert [h["state"] for h in done["history"]][0] == "queued"
    assert done["attempts"] and done["attempts"][-1]["outcome"] == "succeeded"


def test_invalid_job_is_refused_with_field_errors_and_nothing_recorded(idle_api, idle_settings):
    before = _job_keys(idle_settings)
    cases = [
        ({"operation": "add_dataset", "payload": {"name": "x"}}, "payload."),
        ({"operation": "no_such_call", "payload": {}}, "operation"),
        ({"payload": {}}, "operation"),
        ({"operation": "add_algo", "payload": {}, "token": "secret"}, "token"),
        (
            {"operation": "cancel_compute_plan", "payload": {"compute_plan_id": "short"}},
            "payload.compute_plan_id",
        ),
        ({"operation": "add_algo", "payload": [], "options": {"local": "maybe"}}, "payload"),
        ([1, 2], "_schema"),
    ]
    for body, field in cases:
        response = idle_api.post("/jobs", json=body)
        assert response.status_code == 422, (body, response.text)
        error = response.json()
        assert error["message"].startswith("invalid job"), error
        assert any(name.startswith(field) for name in error["errors"]), (body, error)
    # nothing recorded, nothing queued
    assert _job_keys(idle_settings) == before


def test_missing_file_is_refused_at_submit(idle_api: ApiClient, tmp_path: Path, variant: int):
    payload = dataset_payload(tmp_path, variant)
    payload["data_opener"] = str(tmp_path / "missing.py")
    response = idle_api.post("/jobs", json={"operation": "add_dataset", "payload": payload})
    assert response.status_code == 422
    assert "payload.data_opener" in response.json()["errors"]


def test_bad_bodies_are_4xx_json(idle_api: ApiClient):
    cases = [
        ({"data": "{not json", "headers": {"Content-Type": "application/json"}}, 400),
        ({"data": "", "headers": {"Content-Type": "application/json"}}, 400),
        ({"data": '{"operation": NaN}', "headers": {"Content-Type": "application/json"}}, 400),
        ({"data": "[" * 100_000, "headers": {"Content-Type": "application/json"}}, 400),
        ({"data": b"\xff\xfe", "headers": {"Content-Type": "application/json"}}, 400),
        ({"data": {"operation": "add_algo"}}, 415),  # a form
        (
            {"data": "x" * (MAX_BODY_BYTES + 10), "headers": {"Content-Type": "application/json"}},
            413,
        ),
        ({"json": {"operation": "add_algo", "payload": {}, "id": "a" * 32}}, 422),
        ({"json": {**CANCEL, "producer": "watcher:x"}}, 422),
        ({"json": {**CANCEL, "producer": "billing\n"}}, 422),
        ({"json": {**CANCEL, "producer": ""}}, 422),
        ({"json": {**CANCEL, "producer": 7}}, 422),
    ]
    for kwargs, status in cases:
        response = idle_api.post("/jobs", **kwargs)
        assert response.status_code == status, (kwargs.get("headers"), response.text[:200])
        assert "message" in response.json()


def test_a_service_names_itself_and_gets_its_own_scope(idle_api: ApiClient):
    # Given a job with an idempotency key, submitted by a service that names itself
    body = {**CANCEL, "idempotency_key": "scoped"}
    billing = idle_api.post("/jobs", json={**body, "producer": "billing"})
    assert billing.status_code == 201, billing.text
    assert billing.json()["producer"] == "api:billing"
    # the same key from another service, or from an unnamed client, is another job
    reports = idle_api.post("/jobs", json={**body, "producer": "reports"})
    anonymous = idle_api.post("/jobs", json=body)
    assert reports.status_code == anonymous.status_code == 201
    assert anonymous.json()["producer"] == "api"
    ids = {r.json()["id"] for r in (billing, reports, anonymous)}
    assert len(ids) == 3
    # the same key from the same service is the same job
    again = idle_api.post("/jobs", json={**body, "producer": "billing"})
    assert again.status_code == 200
    assert again.json()["id"] == billing.json()["id"]
    # and a service cannot refer to another's job
    link = {
        "operation": "link_dataset_with_objective",
        "payload": {"dataset_key": f"$job:{billing.json()['id']}", "objective_key": UNKNOWN},
    }
    refused = idle_api.post("/jobs", json={**link, "producer": "reports"})
    assert refused.status_code == 422
    assert "another producer" in refused.text
    accepted = idle_api.post("/jobs", json={**link, "producer": "billing"})
    assert accepted.status_code == 201, accepted.text


def test_idempotency_key_returns_the_existing_job(idle_api: ApiClient):
    body = {
        "operation": "cancel_compute_plan",
        "payload": {"compute_plan_id": UNKNOWN},
        "idempotency_key": "plan-0",
    }
    first = idle_api.post("/jobs", json=body)
    again = idle_api.post("/jobs", json=body)
    assert first.status_code == 201
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert first.json()["producer"] == "api"
    # another key is another job
    other = idle_api.post("/jobs", json={**body, "idempotency_key": "plan-1"})
    assert other.status_code == 201
    assert other.json()["id"] != first.json()["id"]


def test_failed_job_is_retried_and_succeeds(api: ApiClient, tmp_path: Path, variant: int):
    # Given a link between a dataset and an objective the node does not know yet
    dataset = dataset_payload(tmp_path / "d", variant)
    objective = objective_payload(tmp_path / "o", variant)
    dataset_key = sha256_file(Path(dataset["data_opener"]))
    objective_key = sha256_file(Path(objective["description"]))
    link = api.submit(
        "link_dataset_with_objective",
        {"dataset_key": dataset_key, "objective_key": objective_key},
    )

    # Then it fails for good, with the node's 404
    failed = api.wait(link["id"])
    assert failed["state"] == "failed"
    assert failed["error"]["type"] == "NotFound"
    assert failed["error"]["retryable"] is False
    listed = api.get("/jobs", params={"state": "failed", "limit": 500}).json()
    assert link["id"] in [j["id"] for j in listed["jobs"]]

    # Only a failed job can be retried; a running or finished one is a conflict
    add = api.submit("add_dataset", dataset)
    assert api.wait(add["id"])["state"] == "succeeded"
    conflict = api.post(f"/jobs/{add['id']}/retry")
    assert conflict.status_code == 409
    assert "only failed jobs" in conflict.json()["message"]

    # When the assets exist and the failed job is retried
    assert api.wait(api.submit("add_objective", objective)["id"])["state"] == "succeeded"
    retried = api.post(f"/jobs/{link['id']}/retry")

    # Then it is queued again and succeeds on its second attempt
    assert retried.status_code == 200, retried.text
    assert retried.json()["state"] in ("queued", "running", "succeeded")
    done = api.wait(link["id"])
    assert done["state"] == "succeeded", done
    assert done["attempt_count"] == 2


def test_cancel_a_queued_job(idle_api: ApiClient):
    job = idle_api.submit("cancel_compute_plan", {"compute_plan_id": UNKNOWN})
    assert job["state"] == "queued"  # no worker on this database

    response = idle_api.post(f"/jobs/{job['id']}/cancel")
    assert response.status_code == 200
    assert response.json()["state"] == "canceled"
    assert idle_api.job(job["id"])["state"] == "canceled"

    again = idle_api.post(f"/jobs/{job['id']}/cancel")
    assert again.status_code == 409
    assert "canceled" in again.json()["message"]
    assert idle_api.post(f"/jobs/{job['id']}/retry").status_code == 409


def test_a_job_waiting_on_a_reference(idle_api: ApiClient):
    first = idle_api.submit("cancel_compute_plan", {"compute_plan_id": UNKNOWN})
    second = idle_api.submit(
        "link_dataset_with_data_samples",
        {"dataset_key": f"$job:{first['id']}", "data_sample_keys": [UNKNOWN]},
    )
    assert second["state"] == "waiting"
    assert second["envelope"]["references"] == [first["id"]]

    # a reference to a job that does not exist is a field error
    missing = idle_api.post(
        "/jobs",
        json={
            "operation": "cancel_compute_plan",
            "payload": {"compute_plan_id": f"$job:{'f' * 32}"},
        },
    )
    assert missing.status_code == 422
    assert "references" in missing.json()["errors"]

    # canceling the reference fails the job that waits on it
    idle_api.post(f"/jobs/{first['id']}/cancel")
    waiting = idle_api.job(second["id"])
    assert waiting["state"] == "failed"
    assert first["id"] in waiting["error"]["message"]


def test_unknown_jobs_routes_and_methods(idle_api: ApiClient):
    for path in ("/jobs/" + "a" * 32, "/jobs/not-an-id", "/jobs/%00", "/nowhere", "/jobs/"):
        response = idle_api.get(path)
        assert response.status_code == 404, path
        assert "message" in response.json()
    for path in ("/jobs/" + "a" * 32 + "/retry", "/jobs/xyz/cancel"):
        assert idle_api.post(path).status_code == 404
    response = idle_api.request("DELETE", "/jobs")
    assert response.status_code == 405
    assert set(response.headers["Allow"].replace(" ", "").split(",")) >= {"GET", "POST"}
    assert "message" in response.json()


def test_list_pages_with_a_cursor_and_filters(idle_api: ApiClient):
    # Given 7 queued jobs of one operation and 2 of another, one canceled
    plans = [
        idle_api.submit("cancel_compute_plan", {"compute_plan_id": f"{i:064x}"})["id"]
        for i in range(7)
    ]
    links = [
        idle_api.submit(
            "link_dataset_with_objective", {"dataset_key": UNKNOWN, "objective_key": f"{i:064x}"}
        )["id"]
        for i in range(2)
    ]
    idle_api.post(f"/jobs/{plans[0]}/cancel")

    # When every page of 3 is read
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = idle_api.get("/jobs", params=params).json()
        seen += [j["id"] for j in page["jobs"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
        # a job submitted meanwhile does not shift the pages
        if pages == 1:
            late = idle_api.submit("cancel_compute_plan", {"compute_plan_id": "e" * 64})["id"]

    # Then each job comes once, newest first (the late one came after the walk began)
    assert pages == 3
    assert seen == list(reversed(plans + links))
    assert late not in seen
    assert page["counts"]["queued"] == 9 and page["counts"]["canceled"] == 1

    # Filters
    by_op = idle_api.get("/jobs", params={"operation": "link_dataset_with_objective"}).json()
    assert [j["id"] for j in by_op["jobs"]] == list(reversed(links))
    canceled = idle_api.get("/jobs", params={"state": "canceled"}).json()
    assert [j["id"] for j in canceled["jobs"]] == [plans[0]]
    both = idle_api.get(
        "/jobs", params={"state": "queued", "operation": "cancel_compute_plan", "limit": 500}
    ).json()
    assert set(j["id"] for j in both["jobs"]) == set(plans[1:]) | {late}
    summary = both["jobs"][0]
    assert "history" not in summary and "envelope" not in summary
    assert summary["attempt_count"] == 0


def test_list_refuses_bad_parameters(idle_api: ApiClient):
    for params, field in [
        ({"limit": 0}, "limit"),
        ({"limit": 501}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"state": "done"}, "state"),
        ({"operation": "drop_everything"}, "operation"),
        ({"cursor": "!!!"}, "cursor"),
        ({"cursor": "bm90LWEtY3Vyc29y"}, "cursor"),
    ]:
        response = idle_api.get("/jobs", params=params)
        assert response.status_code == 400, params
        assert field in response.json()["errors"], response.json()


def test_full_record_and_source(idle_api: ApiClient, tmp_path: Path):
    folders = []
    for i in range(3):
        folder = tmp_path / f"sample{i}"
        folder.mkdir()
        (folder / "data.csv").write_text("1,2\n")
        folders.append(str(folder))
    job = idle_api.submit(
        "add_data_samples",
        {"paths": folders, "data_manager_keys": [UNKNOWN], "test_only": False},
    )
    record = idle_api.job(job["id"])
    assert record["source"] == f"{folders[0]} (+2 more)"
    assert record["envelope"]["payload"]["paths"] == folders
    assert json.dumps(record)  # plain JSON
    listed = idle_api.get("/jobs").json()["jobs"][0]
    assert listed["source"] == record["source"]
