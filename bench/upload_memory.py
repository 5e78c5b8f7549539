"""Peak memory of uploading a 1 GiB data-sample folder with ``Client.add_data_sample(local=True)``.

Creates a folder of a few large random files in a temporary directory, starts a
tiny loopback sink node in a separate process (it streams each request body to
nowhere and answers the protocol's shapes), uploads the folder, and prints one
JSON line with the client process's peak RSS increase. Exits 1 when the
increase reaches the limit.

    .venv/bin/python bench/upload_memory.py [--size-mib 1024] [--files 4] [--limit-mb 100]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

CHUNK = 1024 * 1024  # bytes written or read at once
SAMPLE_KEY = "0" * 64
DATASET_KEY = "1" * 64


# --- the sink node (separate process) --------------------------------------------------


class SinkHandler(BaseHTTPRequestHandler):
    """Reads every body to /dev/null; answers a data-sample create, and any GET."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass

    def _answer(self, status: int, body: object) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_POST(self) -> None:
        remaining = int(self.headers.get("Content-Length") or 0)
        with open(os.devnull, "wb") as sink:
            while remaining:
                chunk = self.rfile.read(min(remaining, CHUNK))
                if not chunk:
                    break
                sink.write(chunk)
                remaining -= len(chunk)
        self._answer(201, [{"pkhash": SAMPLE_KEY, "path": "/sink/sample", "validated": True}])

    def do_GET(self) -> None:
        self._answer(200, {"key": SAMPLE_KEY, "owner": "sink", "dataManagerKeys": [DATASET_KEY]})


def run_sink() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), SinkHandler)
    print(server.server_address[1], flush=True)
    server.serve_forever()


# --- the measured client ---------------------------------------------------------------


def make_folder(folder: Path, size_mib: int, files: int) -> None:
    folder.mkdir(parents=True)
    per_file = size_mib // files
    for i in range(files):
        with (folder / f"part-{i}.bin").open("wb") as f:
            for _ in range(per_file):
                f.write(os.urandom(CHUNK))


def rss_mb() -> float:
    """Current resident set size, MB (Linux); peak so far elsewhere."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return peak_rss_mb()


def peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--files", type=int, default=4)
    parser.add_argument("--limit-mb", type=float, default=100.0)
    parser.add_argument("--sink", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sink:
        run_sink()
        return 0

    # Everything the upload uses is imported before the baseline is taken.
    from substra_worker.sdk import Client

    work = Path(tempfile.mkdtemp(prefix="substra-upload-bench-"))
    sink = subprocess.Popen([sys.executable, __file__, "--sink"], stdout=subprocess.PIPE, text=True)
    try:
        port = int(sink.stdout.readline())
        folder = work / "sample"
        make_folder(folder, args.size_mib, args.files)
        tempfile.tempdir = str(work)  # the temporary archive lives (and is removed) here
        data = {"path": str(folder), "data_manager_keys": [DATASET_KEY], "test_only": False}

        with Client(url=f"http://127.0.0.1:{port}", token="bench") as client:
            before = rss_mb()
            started = time.monotonic()
            answer = client.add_data_sample(data, local=True)
            seconds = time.monotonic() - started
        peak = peak_rss_mb()
        assert answer["pkhash"] == SAMPLE_KEY, answer
        leftovers = [p.name for p in work.iterdir() if p.name != "sample"]
    finally:
        sink.terminate()
        sink.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)

    increase = max(0.0, peak - before)  # statm and ru_maxrss count pages slightly differently
    result = {
        "bench": "upload_memory",
        "size_mib": args.size_mib,
        "files": args.files,
        "seconds": round(seconds, 2),
        "mib_per_s": round(args.size_mib / seconds, 1),
        "rss_before_mb": round(before, 1),
        "peak_rss_mb": round(peak, 1),
        "peak_rss_increase_mb": round(increase, 1),
        "limit_mb": args.limit_mb,
        "temp_files_left": leftovers,
        "ok": increase < args.limit_mb and not leftovers,
    }
    print(json.dumps(result))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
