"""The client's HTTP layer: the only client code that knows requests and status codes.

One ``Transport`` per client holds one ``requests.Session`` (keep-alive: N calls
share one connection), puts the protocol headers on every call, bounds every
socket operation with a timeout, retries 502/503/504 with backoff inside the
call, and turns every failure into an ``SDKException``.

Proxies and CA bundles come from the environment as with plain requests
(``HTTP_PROXY``, ``HTTPS_PROXY``, ``ALL_PROXY``, ``NO_PROXY``,
``REQUESTS_CA_BUNDLE``, ``CURL_CA_BUNDLE``), read at a client's first call to
each host and kept for the client's life: set them before creating the client.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import requests
import urllib3
from requests.sessions import merge_setting
from requests.utils import get_environ_proxies

from substra_worker.sdk import exceptions

logger = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({502, 503, 504})  # gateway answers, retried inside the call
LOGIN_REFUSED = frozenset({400, 401})  # login answers meaning "bad credentials"
FIRST_BACKOFF = 1.0  # seconds before the first retry, doubled each time
CHUNK_SIZE = 1024 * 1024  # bytes read at once from a streamed download

_NO_BODY = object()
ENVIRONMENT_CACHE_SIZE = 64  # hosts whose proxy settings a session keeps


class _Session(requests.Session):
    """A session that reads the environment's proxy and CA settings once per host.

    ``requests`` reads them again for every request (``merge_environment_settings``
    walks the whole environment for ``*_proxy`` variables: a sixth of a short
    call on loopback). What it finds depends only on the environment and on the
    URL's scheme and host, so it is kept per scheme and host. The merge with
    the session's own settings is the one ``requests`` does; ``.netrc`` and
    redirects are left to ``requests``.
    """

    def __init__(self) -> None:
        super().__init__()
        self._environment: dict[tuple[str, str, str | None], tuple[dict, str | None]] = {}

    def merge_environment_settings(self, url, proxies, stream, verify, cert):
        if not self.trust_env:
            return super().merge_environment_settings(url, proxies, stream, verify, cert)
        no_proxy = proxies.get("no_proxy") if proxies is not None else None
        parts = urlsplit(url)
        key = (parts.scheme, parts.netloc, no_proxy)
        found = self._environment.get(key)
        if found is None:
            bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
            found = (get_environ_proxies(url, no_proxy=no_proxy), bundle)
            if len(self._environment) >= ENVIRONMENT_CACHE_SIZE:
                self._environment.clear()
            self._environment[key] = found
        env_proxies, bundle = found
        if proxies is not None:
            for name, value in env_proxies.items():
                proxies.setdefault(name, value)
        if verify is True or verify is None:
            verify = bundle or verify
        return {
            "proxies": merge_setting(proxies, self.proxies),
            "stream": merge_setting(stream, self.stream),
            "verify": merge_setting(verify, self.verify),
            "cert": merge_setting(cert, self.cert),
        }


def backoff_delays(first: float = FIRST_BACKOFF) -> Iterator[float]:
    """1, 2, 4, ... seconds: the waits between successive retries."""
    delay = first
    while True:
        yield delay
        delay *= 2


class Transport:
    """Requests to one node: URLs, headers, timeouts, retries, errors."""

    def __init__(
        self,
        url: str,
        token: str | None,
        *,
        version: str = "0.0",
        insecure: bool = False,
        timeout: float,
        retry_timeout: float | None,
    ):
        self.base_url = url.rstrip("/")
        self.token = token
        self.version = version
        self.timeout = timeout  # seconds: connect and each socket read
        self.retry_timeout = retry_timeout or 0  # seconds: 502/503/504 retry budget
        self._session = _Session()
        self._session.verify = not insecure

    # --- URLs and headers ----------------------------------------------------------

    def url(self, *segments: str) -> str:
        """``{base}/{segment}/.../``: every protocol URL ends with a slash."""
        path = "/".join(quote(str(s), safe="") for s in segments)
        return f"{self.base_url}/{path}/"

    def absolute(self, address: str) -> str:
        """A node-given ``storageAddress`` as a full URL (it may be a bare path)."""
        if urlsplit(address).scheme:
            return address
        return f"{self.base_url}/{address.lstrip('/')}"

    def headers(self, *, auth: bool = True) -> dict[str, str]:
        headers = {"Accept": f"application/json;version={self.version}"}
        if auth and self.token:
            headers["Authorization"] = f"Token {self.token}"
        return headers

    # --- requests ------------------------------------------------------------------

    def request(
        self,
        method: str,
        url: str,
        *,
        query: str | None = None,
        json: Any = _NO_BODY,
        form: dict[str, Any] | None = None,
        body: Callable[[], tuple[Any, str]] | None = None,
        auth: bool = True,
        stream: bool = False,
        deadline: float | None = None,
    ) -> requests.Response:
        """Send one call and return its 2xx answer; raise the SDK error of anything else.

        ``query`` is sent raw (already encoded). ``body`` builds a fresh
        ``(data, content type)`` for each attempt, so a streamed upload can be
        re-sent. 502/503/504 are retried with backoff until ``deadline``
        (monotonic seconds; default: ``retry_timeout`` from now).
        """
        if query:
            url = f"{url}?{query}"
        if deadline is None:
            deadline = time.monotonic() + self.retry_timeout
        delays = backoff_delays()
        while True:
            kwargs: dict[str, Any] = {"headers": self.headers(auth=auth)}
            if json is not _NO_BODY:
                kwargs["json"] = json
            elif form is not None:
                kwargs["data"] = form
            elif body is not None:
                kwargs["data"], kwargs["headers"]["Content-Type"] = body()
            response = self._send(method, url, stream=stream, **kwargs)
            status = response.status_code
            if status < 400:
                return response
            remaining = deadline - time.monotonic()
            if status in RETRY_STATUSES and remaining > 0:
                delay = min(next(delays), remaining)
                _drain(response)
                logger.warning("%s %s answered %s; retrying in %.1fs", method, url, status, delay)
                time.sleep(delay)
                continue
            raise self._error(response)

    def json(self, method: str, url: str, **kwargs: Any) -> Any:
        """``request`` and the JSON of its answer (``None`` for 204 No Content)."""
        return parse_json(self.request(method, url, **kwargs))

    def text(self, url: str) -> str:
        """The body of a GET as text (UTF-8 unless the node says otherwise)."""
        response = self.request("GET", url)
        if "charset" not in response.headers.get("Content-Type", "").lower():
            response.encoding = "utf-8"
        return response.text

    def login(self, username: str, password: str) -> dict:
        """POST the credentials (form fields, no token); ``BadLoginException`` if refused."""
        try:
            return self.json(
                "POST",
                self.url("api-token-auth"),
                form={"username": username, "password": password},
                auth=False,
            )
        except exceptions.HTTPError as e:
            if e.status_code in LOGIN_REFUSED:
                raise exceptions.BadLoginException(e.msg, e.status_code) from e
            raise

    def download(self, url: str, destination: Path) -> Path:
        """Stream a GET into ``destination`` atomically.

        The body goes to a temporary file next to ``destination``, renamed over
        it only once complete; a broken stream leaves no partial file.
        """
        destination.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{destination.name}.", dir=destination.parent)
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out, self.request("GET", url, stream=True) as response:
                try:
                    for chunk in response.iter_content(CHUNK_SIZE):
                        out.write(chunk)
                except requests.RequestException as e:
                    raise _translate(e, url) from e
            os.replace(tmp, destination)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            raise
        return destination

    def close(self) -> None:
        self._session.close()

    # --- internals -----------------------------------------------------------------

    def _send(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        logger.debug("%s %s", method, url)
        try:
            return self._session.request(method, url, timeout=self.timeout, **kwargs)
        except requests.RequestException as e:
            raise _translate(e, url) from e

    @staticmethod
    def _error(response: requests.Response) -> exceptions.HTTPError:
        body = exceptions.parse_body(response.content)
        return exceptions.error_from_status(response.status_code, body)


def parse_json(response: requests.Response) -> Any:
    """The JSON of a 2xx answer; ``InvalidResponse`` when it is not JSON."""
    if response.status_code == 204:
        return None
    try:
        return response.json()
    except ValueError as e:
        snippet = response.text[:200]
        raise exceptions.InvalidResponse(
            response, f"{response.request.method} {response.url}: answer is not JSON: {snippet!r}"
        ) from e


def _drain(response: requests.Response) -> None:
    """Read and release a discarded answer so its connection goes back to the pool."""
    with contextlib.suppress(requests.RequestException):
        _ = response.content
    response.close()


def _translate(e: requests.RequestException, url: str) -> exceptions.RequestException:
    """The SDK exception of a requests failure that produced no usable answer."""
    cause = e.args[0] if e.args else None
    if isinstance(e, requests.Timeout) or isinstance(cause, urllib3.exceptions.ReadTimeoutError):
        return exceptions.Timeout(f"{url}: no answer within the timeout: {e}")
    if isinstance(e, requests.ConnectionError | requests.exceptions.ChunkedEncodingError):
        return exceptions.ConnectionError(f"{url}: connection failed: {e}")
    return exceptions.RequestException(f"{url}: request failed: {e}")
