"""A threading HTTP server for test peers that does not print when a client gives up.

Fault tests make clients time out and drop connections on purpose; the
standard server prints each such error to stderr, after the test that caused
it has ended, where it reads like a failure.
"""

from __future__ import annotations

import sys
from http.server import ThreadingHTTPServer
from typing import Any


class QuietHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return  # a client that went away
        super().handle_error(request, client_address)
