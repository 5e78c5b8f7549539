"""Confinement: the node reads server paths only inside its data roots, downloads land only
inside the download root, and the watcher follows no link out of its root."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest
import redis
import requests

from substra_worker import Client
from substra_worker.jobs import JobFailed, JobState
from substra_worker.redis_server import BundledRedis
from substra_worker.sdk.exceptions import InvalidInput
from substra_worker.settings import Settings
from substra_worker.submitter import Submitter
from substra_worker.watcher.service import Watcher
from substra_worker.watcher.state import WatchState
from substra_worker.watcher.submit import JobGateway
from tests.assets import make_algo_archive, make_sample_folders
from tests.faults.conftest import FAST, Target
from tests.faults.results import record_security
from tests.faults.workload import dataset_data, wait_until
from tests.support.node_process import start_node
from tests.support.stack import WorkerProcess, worker_env

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def rooted(tmp_path_factory):
    """A node with one data root, a secret folder outside it, and a dataset."""
    base = tmp_path_factory.mktemp("rooted")
    root, outside = base / "root", base / "outside"
    root.mkdir()
    make_sample_folders(outside, 2, prefix="secret")
    node = start_node(base / "node", data_roots=[root])
    client = Client(url=node.url, token=node.token)
    dataset = client.add_dataset(dataset_data(base, "rooted"))["key"]
    yield node, client, dataset, root, outside
    node.stop()


def post_server_path(node, body: dict) -> requests.Response:
    return requests.post(f"{node.url}/data_sample/", json=body, headers=node.headers, timeout=10)


# --- local=False server paths -------------------------------------------------------------


@pytest.mark.parametrize("how", ["absolute outside", "dot-dot", "symlinked folder", "in paths"])
def test_server_paths_outside_the_data_roots_are_forbidden(rooted, how):
    node, client, dataset, root, outside = rooted
    before = len(client.list_data_sample())
    target = outside / "secret0"
    if how == "absolute outside":
        body = {"path": str(target)}
    elif how == "dot-dot":
        body = {"path": f"{root}/../outside/secret0"}
    elif how == "symlinked folder":
        link = root / "link-to-secret"
        if not link.exists():
            link.symlink_to(target)
        body = {"path": str(link)}
    else:
        inside = make_sample_folders(root / "ok", 1, prefix="fine")[0]
        body = {"paths": [str(inside), str(target)]}
    response = post_server_path(node, {**body, "data_manager_keys": [dataset]})
    assert response.status_code == 403, response.text
    assert "data roots" in response.json()["message"]
    assert len(client.list_data_sample()) == before  # all or nothing
    record_security(f"local=False: a path outside the data roots is forbidden ({how})", "pass")


def test_multiple_does_not_follow_a_symlinked_subfolder_out_of_the_roots(rooted):
    node, client, dataset, root, outside = rooted
    before = len(client.list_data_sample())
    parent = root / "parent"
    make_sample_folders(parent, 1, prefix="real")
    (parent / "escape").symlink_to(outside / "secret1")
    response = post_server_path(
        node, {"path": str(parent), "multiple": True, "data_manager_keys": [dataset]}
    )
    registered = response.json() if response.ok else []
    paths = [item["path"] for item in registered]
    assert response.status_code == 403 and not paths, paths
    message = response.json()["message"]
    assert "escape" in message and "data roots" in message
    assert str(outside) not in message  # where the link leads is not told
    assert len(client.list_data_sample()) == before  # not even the real sub-folder
    # a symlinked sub-folder that stays inside the roots is followed
    (parent / "escape").unlink()
    (parent / "inside").symlink_to(make_sample_folders(root / "elsewhere", 1, prefix="in")[0])
    response = post_server_path(
        node, {"path": str(parent), "multiple": True, "data_manager_keys": [dataset]}
    )
    assert response.status_code == 201, response.text
    assert len(response.json()) == 2
    record_security(
        "local=False with multiple: a symlinked sub-folder out of the roots is refused", "pass"
    )


@pytest.mark.parametrize("link", ["file", "folder", "file via a link inside the root"])
def test_a_symlinked_file_out_of_the_roots_is_refused(rooted, link):
    node, client, dataset, root, outside = rooted
    before = len(client.list_data_sample())
    folder = make_sample_folders(root / f"leaky-{link}", 1, prefix="leaky")[0]
    if link == "file":
        (folder / "stolen.csv").symlink_to(outside / "secret0" / "data.csv")
    elif link == "folder":  # not part of the key, but the algo would see it
        (folder / "stolen.csv").symlink_to(outside / "secret0", target_is_directory=True)
    else:
        relay = root / f"relay-{folder.parent.name}"
        relay.symlink_to(outside / "secret0" / "data.csv")
        (folder / "stolen.csv").symlink_to(relay)
    response = post_server_path(node, {"path": str(folder), "data_manager_keys": [dataset]})
    assert response.status_code == 403, response.text
    message = response.json()["message"]
    assert "stolen.csv" in message and "data roots" in message
    assert str(outside) not in message
    assert len(client.list_data_sample()) == before
    record_security(
        f"local=False: a sample folder linking a {link.split()[0]} out of the roots is refused",
        "pass",
    )


def test_links_inside_the_roots_are_followed_and_special_files_refused(rooted):
    node, client, dataset, root, outside = rooted
    shared = make_sample_folders(root / "shared", 1, prefix="shared", seed=41)[0]
    folder = make_sample_folders(root / "linking", 1, prefix="linking", seed=42)[0]
    (folder / "shared.csv").symlink_to(shared / "data.csv")
    response = post_server_path(node, {"path": str(folder), "data_manager_keys": [dataset]})
    assert response.status_code == 201, response.text

    broken = make_sample_folders(root / "broken", 1, prefix="broken", seed=43)[0]
    (broken / "gone.csv").symlink_to(root / "no-such-file")
    fifo = make_sample_folders(root / "fifo", 1, prefix="fifo", seed=44)[0]
    os.mkfifo(fifo / "pipe")  # reading it would block the node
    for path, name, why in [(broken, "gone.csv", "broken link"), (fifo, "pipe", "regular")]:
        response = post_server_path(node, {"path": str(path), "data_manager_keys": [dataset]})
        assert response.status_code == 400, response.text
        assert name in response.json()["message"] and why in response.json()["message"]


def test_a_server_path_job_outside_the_roots_fails_with_the_reason(rooted, tmp_path):
    node, client, dataset, root, outside = rooted
    redis_server = BundledRedis(tmp_path / "redis")
    settings = Settings(redis_url=redis_server.start(), state_dir=tmp_path / "state", **FAST)
    worker = WorkerProcess(
        worker_env(settings, Target(node.url, node.token), **FAST), tmp_path / "w.log"
    ).start()
    try:
        with Submitter(settings) as producer:
            job = producer.add_data_sample(
                {"path": str(outside / "secret1"), "data_manager_keys": [dataset]}, local=False
            )
            with pytest.raises(JobFailed):
                job.wait(timeout=30)
        assert job.error["type"] == "AuthorizationError" and job.error["status"] == 403
        assert "not inside the node's data roots" in job.error["message"]
        assert [a["outcome"] for a in job.attempts] == ["failed"]  # not worth a retry
        record_security(
            "local=False job outside the data roots fails at once, with the reason", "pass"
        )
    finally:
        worker.stop()
        redis_server.stop()


# --- download destinations ----------------------------------------------------------------


@pytest.fixture
def download_setup(tmp_path):
    redis_server = BundledRedis(tmp_path / "redis")
    redis_server.start()
    root = tmp_path / "downloads"
    root.mkdir()
    (root / "link-out").symlink_to(tmp_path)
    yield redis_server, root
    redis_server.stop()


@pytest.mark.parametrize(
    "destination",
    ["../escaped", "a/../../escaped", "/etc/substra-worker-test", "link-out/escaped", "~/x"],
)
def test_download_destinations_outside_the_root_are_refused_at_submit(download_setup, destination):
    redis_server, root = download_setup
    settings = Settings(redis_url=redis_server.url, download_root=str(root))
    client = redis.Redis.from_url(redis_server.url)
    before = sorted(client.keys("*"))
    with Submitter(settings) as producer, pytest.raises(InvalidInput) as info:
        producer.download_algo("a" * 64, destination)
    assert "options.destination" in info.value.errors
    assert "download root" in str(info.value)
    assert sorted(client.keys("*")) == before and client.llen("substra-worker") == 0
    client.close()
    record_security(
        "Download destination outside the download root refused at submit",
        "pass",
        "../, a/../../, an absolute path, a symlink out, ~",
    )


def test_inside_the_root_is_accepted_and_made_absolute(download_setup):
    redis_server, root = download_setup
    settings = Settings(redis_url=redis_server.url, download_root=str(root))
    with Submitter(settings) as producer:
        job = producer.download_algo("a" * 64, "team/algos")
    assert job.envelope["options"]["destination"] == str(root.resolve() / "team" / "algos")


def test_the_worker_confines_downloads_whatever_the_producer_allowed(
    download_setup, node, tmp_path
):
    redis_server, root = download_setup
    client = Client(url=node.url, token=node.token)
    algo = client.add_algo(
        {
            "name": "confined",
            "file": str(make_algo_archive("algo", tmp_path / "a", variant=777)),
            "description": dataset_data(tmp_path, "confined")["description"],
            "permissions": {"public": True, "authorized_ids": []},
        },
        exist_ok=True,
    )["key"]
    # a producer with no download root (another machine, another configuration)
    loose = Settings(redis_url=redis_server.url, state_dir=tmp_path / "state", **FAST)
    outside = tmp_path / "outside-the-root"
    env = worker_env(loose, Target(node.url, node.token), **FAST, download_root=str(root))
    worker = WorkerProcess(env, tmp_path / "w.log").start()
    try:
        with Submitter(loose) as producer:
            escaped = producer.download_algo(algo, str(outside))
            fine = producer.download_algo(algo, str(root / "fine"))
            with pytest.raises(JobFailed):
                escaped.wait(timeout=30)
            fine.wait(timeout=30)
    finally:
        worker.stop()
    assert "download root" in escaped.error["message"]
    assert not outside.exists()
    assert fine.state is JobState.SUCCEEDED
    assert Path(fine.result["path"]).parent == root.resolve() / "fine"
    assert Path(fine.result["path"]).is_file()
    record_security(
        "The worker confines downloads to its own download root, whatever the producer allowed",
        "pass",
    )


# --- the watcher ----------------------------------------------------------------------------


def test_the_watcher_follows_no_link_out_of_its_root(tmp_path):
    redis_server = BundledRedis(tmp_path / "redis")
    redis_server.start()
    root, outside = tmp_path / "watch", tmp_path / "outside"
    secret = make_sample_folders(outside, 1, prefix="secret")[0]
    channel = root / "channel"
    channel.mkdir(parents=True)
    (channel / "channel.json").write_text(json.dumps({"dataset_key": "d" * 64}))
    shared = make_sample_folders(root / ".shared", 1, prefix="shared")[0]
    # a folder that is a link out of the root
    (channel / "escape").symlink_to(secret)
    # a folder holding a link to a file out of the root
    leaky = make_sample_folders(channel, 1, prefix="leaky")[0]
    (leaky / "stolen.csv").symlink_to(secret / "data.csv")
    # a folder holding a link to a folder (even inside the root)
    linked = make_sample_folders(channel, 1, prefix="linked")[0]
    (linked / "sub").symlink_to(shared)
    # a channel that is a link out of the root
    out_channel = make_sample_folders(outside / "chan", 1, prefix="elsewhere")[0].parent
    (out_channel / "channel.json").write_text(json.dumps({"dataset_key": "d" * 64}))
    (root / "linked-channel").symlink_to(out_channel)
    # and one folder linking a file inside the root: followed
    fine = make_sample_folders(channel, 1, prefix="fine")[0]
    (fine / "shared.csv").symlink_to(shared / "data.csv")

    settings = Settings(
        redis_url=redis_server.url, quiet_period=0.2, batch_window=0.2, rescan_interval=1.0
    )
    gateway = JobGateway.from_settings(settings)
    state = WatchState(gateway.redis, root, prefix=gateway.prefix)
    watcher = Watcher(root, gateway=gateway, state=state, settings=settings)
    watcher.start()
    thread = threading.Thread(target=watcher.run, daemon=True)
    thread.start()
    try:
        wait_until(
            lambda: len({r.key: r.status for r in state.folders()
                         if r.status in ("rejected", "queued")}) == 5,
            30,
            "five folders looked at",
        )  # fmt: skip
    finally:
        watcher.stop()
        thread.join(30)
    records = {r.key: r for r in state.folders()}
    reasons = {key: r.reason for key, r in records.items() if r.status == "rejected"}
    assert "outside the watch root" in reasons["channel/escape"]
    assert "points outside the watch root" in reasons["channel/leaky0"]
    assert "linked folders are not uploaded" in reasons["channel/linked0"]
    assert "outside the watch root" in reasons["linked-channel/elsewhere0"]
    assert records["channel/fine0"].status == "queued"
    # the one job submitted carries the one accepted folder, nothing from outside
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    with Submitter(settings, producer="watcher") as reader:
        jobs = reader.list_jobs()
    payloads = json.dumps([j.envelope["payload"] for j in jobs])
    assert str(fine) in payloads and str(outside) not in payloads
    assert len(jobs) == 1
    client.close()
    record_security(
        "The watcher follows no link out of its root (folders, files, channels)", "pass"
    )
    gateway.close()
    redis_server.stop()
