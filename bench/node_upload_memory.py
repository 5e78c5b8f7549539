"""Peak memory of `substra-worker node` while a large data sample is uploaded to it.

Starts a real node process, registers a small dataset, then POSTs one data
sample archive of ``--size-mib`` MiB (default 1 GiB) as a plain streamed
multipart request (requests-toolbelt's encoder reads the archive from disk in
chunks). The node's peak resident set size is read from ``/proc/<pid>/status``
(``VmHWM``), so this runs on Linux. Prints one JSON line, for example::

    {"bench": "node_upload_memory", "upload_mib": 1024, "status": 201, "peak_rss_mib": 61.2, ...}

Usage: ``.venv/bin/python bench/node_upload_memory.py [--size-mib 1024] [--work-dir DIR]``.
It needs about four times the sample size of free disk in the work folder and in
the temporary folder (the archive, the server's spooled body, the spooled part,
the extracted sample).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tarfile
import tempfile
import threading
import time
from pathlib import Path

import requests
from requests_toolbelt.multipart.encoder import MultipartEncoder

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.node_process import start_node  # noqa: E402

CHUNK = 1024 * 1024
OPENER = b"""import substratools as tools


class Opener(tools.Opener):
    def get_X(self, folders):
        return folders

    def get_y(self, folders):
        return folders

    def fake_X(self):
        return []

    def fake_y(self):
        return []

    def get_predictions(self, path):
        return None

    def save_predictions(self, y_pred, path):
        pass
"""


def rss_kib(pid: int, field: str) -> int:
    """A memory field of ``/proc/<pid>/status`` in KiB (``VmHWM``: peak, ``VmRSS``: now)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not found for pid {pid}")


def make_sample_archive(work: Path, size_mib: int) -> Path:
    """A tar (uncompressed, written in chunks) of one folder holding one ``size_mib`` file."""
    folder = work / "sample"
    folder.mkdir()
    block = os.urandom(CHUNK)
    with open(folder / "data.bin", "wb") as out:
        for i in range(size_mib):
            # vary each block so the sample is not a run of identical blocks
            out.write(i.to_bytes(8, "big") + block[8:])
    archive = work / "sample.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(folder, arcname=".")
    shutil.rmtree(folder)
    return archive


def register_dataset(url: str, headers: dict, work: Path) -> str:
    opener = work / "opener.py"
    opener.write_bytes(OPENER)
    description = work / "description.md"
    description.write_text("# bench dataset\n")
    with open(opener, "rb") as o, open(description, "rb") as d:
        fields = {
            "json": json.dumps(
                {
                    "name": "bench",
                    "type": "bench",
                    "permissions": {"public": True, "authorized_ids": []},
                }
            ),
            "data_opener": ("opener.py", o, "text/x-python"),
            "description": ("description.md", d, "text/markdown"),
        }
        encoder = MultipartEncoder(fields)
        response = requests.post(
            f"{url}/data_manager/",
            data=encoder,
            headers={**headers, "Content-Type": encoder.content_type},
            timeout=60,
        )
    response.raise_for_status()
    return response.json()["pkhash"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024, help="sample size in MiB")
    parser.add_argument("--work-dir", type=Path, default=None, help="scratch folder")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="node-upload-bench-", dir=args.work_dir))
    node = None
    try:
        archive = make_sample_archive(work, args.size_mib)
        node = start_node(work / "state")
        pid = node.process.pid
        dataset_key = register_dataset(node.url, node.headers, work)
        rss_before = rss_kib(pid, "VmRSS")

        # sample the current RSS while the upload runs, as a cross-check of VmHWM
        samples: list[int] = []
        done = threading.Event()

        def watch() -> None:
            while not done.is_set():
                samples.append(rss_kib(pid, "VmRSS"))
                time.sleep(0.05)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        started = time.monotonic()
        with open(archive, "rb") as sample:
            encoder = MultipartEncoder(
                {
                    "json": json.dumps({"data_manager_keys": [dataset_key], "test_only": False}),
                    "path": ("sample.tar", sample, "application/x-tar"),
                }
            )
            response = requests.post(
                f"{node.url}/data_sample/",
                data=encoder,
                headers={**node.headers, "Content-Type": encoder.content_type},
                timeout=3600,
            )
        seconds = time.monotonic() - started
        done.set()
        watcher.join()
        # VmHWM is synced lazily from per-thread counters; the samples can read a hair higher
        peak = max([rss_kib(pid, "VmHWM"), *samples])
        result = {
            "bench": "node_upload_memory",
            "upload_mib": args.size_mib,
            "body_bytes": encoder.len,
            "status": response.status_code,
            "seconds": round(seconds, 1),
            "mib_per_s": round(args.size_mib / seconds, 1),
            "rss_before_mib": round(rss_before / 1024, 1),
            "peak_rss_mib": round(peak / 1024, 1),
        }
        if response.status_code != 201:
            result["answer"] = response.text[:500]
        print(json.dumps(result), flush=True)
    finally:
        if node is not None:
            node.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
