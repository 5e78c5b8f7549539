"""Save a screenshot of the dashboard with real jobs (for the README).

Runs the whole stack on loopback — the bundled Redis, the embedded node, a
Celery worker and the API — submits a chain of real jobs over HTTP (a
dataset, its samples, an objective, an algo, a followed compute plan, a link
that fails), then opens the dashboard in headless Chromium::

    .venv/bin/python -m tests.api.screenshot [docs/dashboard.png]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from substra_worker.api.app import ApiServer
from substra_worker.redis_server import BundledRedis
from tests import assets
from tests.api.browser import find_browser, start_chromium
from tests.api.stack import (
    API_TOKEN,
    PERMISSIONS,
    ApiClient,
    api_settings,
    dataset_payload,
    objective_payload,
)
from tests.support.node_process import start_node
from tests.support.stack import WorkerProcess, worker_env

DEFAULT_OUTPUT = Path("docs/dashboard.png")


def submit_jobs(api: ApiClient, folder: Path) -> dict[str, str]:
    """A realistic chain, submitted at once: each job refers to the ones it needs."""
    ids: dict[str, str] = {}
    ids["dataset"] = api.submit("add_dataset", dataset_payload(folder / "dataset", 1, "houses"))[
        "id"
    ]
    samples = assets.make_sample_folders(folder / "incoming", 6)
    ids["samples"] = api.submit(
        "add_data_samples",
        {
            "paths": [str(p) for p in samples],
            "data_manager_keys": [f"$job:{ids['dataset']}"],
            "test_only": False,
        },
    )["id"]
    ids["objective"] = api.submit("add_objective", objective_payload(folder / "objective", 1))["id"]
    algo = assets.make_algo_archive("sleeping_algo", folder / "algo", sleep=1.5)
    description = assets.description_path("# Linear regression\n", dest_dir=folder / "algo")
    ids["algo"] = api.submit(
        "add_algo",
        {
            "name": "linear",
            "file": str(algo),
            "description": str(description),
            "permissions": PERMISSIONS,
        },
    )["id"]
    rounds = [
        {
            "traintuple_id": f"round-{i}",
            "algo_key": f"$job:{ids['algo']}",
            "data_manager_key": f"$job:{ids['dataset']}",
            "train_data_sample_keys": [f"$job:{ids['samples']}"],
            "in_models_ids": [f"round-{i - 1}"] if i else [],
        }
        for i in range(4)
    ]
    ids["plan"] = api.submit("add_compute_plan", {"traintuples": rounds}, follow=True)["id"]
    ids["link"] = api.submit(
        "link_dataset_with_objective", {"dataset_key": "0" * 64, "objective_key": "1" * 64}
    )["id"]
    return ids


def main(output: Path = DEFAULT_OUTPUT) -> Path:
    if find_browser() is None:
        raise SystemExit("chromium and chromium-driver are needed (apt-get install them)")
    with tempfile.TemporaryDirectory(prefix="substra-worker-shot-") as tmp:
        root = Path(tmp)
        redis_server = BundledRedis(root / "redis")
        redis_server.start()
        node = start_node(root / "node")
        settings = api_settings(redis_server.url, root / "state")
        worker = WorkerProcess(worker_env(settings, node), root / "worker.log").start()
        server = ApiServer(settings).start()
        driver = None
        try:
            api = ApiClient(server)
            ids = submit_jobs(api, root / "files")
            for name in ("dataset", "samples", "objective", "algo", "link"):
                api.wait(ids[name], timeout=120)
            # catch the followed plan half way
            deadline = time.monotonic() + 120
            while (api.job(ids["plan"]).get("progress") or {}).get("done", 0) < 2:
                if time.monotonic() > deadline:
                    raise RuntimeError("the compute plan did not progress")
                time.sleep(0.2)
            worker.stop()  # what follows stays queued, waiting or canceled
            queued = api.submit("cancel_compute_plan", {"compute_plan_id": "2" * 64})
            api.submit(
                "link_dataset_with_data_samples",
                {"dataset_key": f"$job:{queued['id']}", "data_sample_keys": ["3" * 64]},
            )
            canceled = api.submit("cancel_compute_plan", {"compute_plan_id": "4" * 64})
            api.post(f"/jobs/{canceled['id']}/cancel")

            driver = start_chromium(root / "chromium", width=1280, height=800)
            driver.get(f"{server.url}/?token={API_TOKEN}")
            deadline = time.monotonic() + 30
            while "updated" not in driver.find_element("id", "status").text:
                if time.monotonic() > deadline:
                    raise RuntimeError("the dashboard did not load")
                time.sleep(0.1)
            # the whole page at 1280 CSS pixels wide, no scroll bar
            height = driver.execute_script(
                "return Math.ceil(document.querySelector('footer').getBoundingClientRect().bottom)"
                " + 16;"
            )
            driver.execute_cdp_cmd(
                "Emulation.setDeviceMetricsOverride",
                {"width": 1280, "height": height, "deviceScaleFactor": 1, "mobile": False},
            )
            time.sleep(0.5)
            output.parent.mkdir(parents=True, exist_ok=True)
            driver.save_screenshot(str(output))
        finally:
            if driver is not None:
                driver.quit()
            server.stop()
            worker.stop()
            node.stop()
            redis_server.stop()
    return output


if __name__ == "__main__":
    print(main(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_OUTPUT))
