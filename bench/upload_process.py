"""One upload of the large-upload benchmark, in a process of its own (its peak RSS is its own).

    python -m bench.upload_process client|post URL DATASET_KEY PATH

``client`` registers the folder PATH with ``Client.add_data_sample``; ``post``
POSTs the zip PATH as a streamed multipart body with requests. The node token
comes from ``SUBSTRA_WORKER_NODE_TOKEN`` (never the command line). Prints one
JSON line: the sample key, seconds, and the process's RSS before and at peak.
Only what the upload needs is imported, so the RSS is the upload's.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from bench.measure import own_peak_rss_mb

TIMEOUT = 1800.0  # seconds: socket timeout of the plain POST


def _upload_with_client(url: str, token: str, dataset: str, folder: str) -> dict:
    from substra_worker.sdk import archive as archive_module
    from substra_worker.sdk.client import Client

    zipped: list[float] = []
    original = archive_module.write_zip

    def timed_write_zip(source, target):  # to split the time: zipping vs transfer
        started = time.perf_counter()
        original(source, target)
        zipped.append(time.perf_counter() - started)

    archive_module.write_zip = timed_write_zip
    with Client(url=url, token=token) as client:
        before = own_peak_rss_mb()
        started = time.perf_counter()
        answer = client.add_data_sample(
            {"path": folder, "data_manager_keys": [dataset], "test_only": False}
        )
        seconds = time.perf_counter() - started
    return {
        "key": answer["pkhash"],
        "seconds": round(seconds, 3),
        "transfer_seconds": round(seconds - sum(zipped), 3),
        "client_peak_before_upload_mb": before,
    }


def _upload_with_post(url: str, token: str, dataset: str, archive: str) -> dict:
    import requests
    from requests_toolbelt.multipart.encoder import MultipartEncoder

    headers = {"Authorization": f"Token {token}", "Accept": "application/json;version=0.0"}
    before = own_peak_rss_mb()
    started = time.perf_counter()
    with open(archive, "rb") as f:
        encoder = MultipartEncoder(
            [
                ("json", json.dumps({"data_manager_keys": [dataset], "test_only": False})),
                ("path", ("path", f, "application/zip")),
            ]
        )
        response = requests.post(
            f"{url}/data_sample/",
            data=encoder,
            headers={**headers, "Content-Type": encoder.content_type},
            timeout=TIMEOUT,
        )
    seconds = time.perf_counter() - started
    response.raise_for_status()
    return {
        "key": response.json()[0]["pkhash"],
        "seconds": round(seconds, 3),
        "client_peak_before_upload_mb": before,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="one upload of the large-upload benchmark")
    parser.add_argument("mode", choices=("client", "post"))
    parser.add_argument("url")
    parser.add_argument("dataset")
    parser.add_argument("path")
    args = parser.parse_args(argv)
    from substra_worker.settings import get_settings

    token = get_settings().node_token or ""
    upload = _upload_with_client if args.mode == "client" else _upload_with_post
    result = upload(args.url, token, args.dataset, args.path)
    result["client_peak_rss_mb"] = own_peak_rss_mb()
    tmp = os.environ.get("TMPDIR")
    result["temp_files_left"] = len(os.listdir(tmp)) if tmp else None
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
