"""The embedded node over HTTP: the Substra protocol as a WSGI application, served by waitress.

``NodeApp`` maps each route of the protocol onto one ``Node`` call and turns
``NodeError`` refusals, routing errors and unexpected exceptions into
``{"message": ...}`` answers in one place. Multipart uploads are parsed as a
stream into temporary files of the node state folder (never into memory) and
handed to the node as paths. ``NodeServer`` binds the port, tells the node its
base URL (``storageAddress`` values are absolute URLs on this server), runs the
node's background executor and stops both cleanly.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING

from werkzeug.datastructures import FileStorage, MultiDict
from werkzeug.formparser import parse_form_data
from werkzeug.routing import Map, RequestRedirect, Rule
from werkzeug.utils import send_file
from werkzeug.wrappers import Request, Response

from substra_worker import pids
from substra_worker.node.auth import Authenticator, TokenStore
from substra_worker.node.errors import BadRequest, NodeError, PayloadTooLarge
from substra_worker.node.node import Node
from substra_worker.sdk import assets
from substra_worker.sdk.filters import parse_search
from substra_worker.wsgi import JsonApp, WaitressServer, json_response

if TYPE_CHECKING:
    from substra_worker.settings import Settings

log = logging.getLogger(__name__)

LOGIN_PATH = "/api-token-auth/"
KEY_RE = re.compile(r"^[0-9a-fA-F]{64}$")
MAX_FORM_MEMORY = 8 * 1024**2  # bytes: largest non-file multipart field (the "json" field)
MAX_FORM_PARTS = 100_000  # parts in one multipart body (one archive per data sample)
MAX_JSON_BYTES = 64 * 1024**2  # bytes: largest JSON body (a big compute plan)
MAX_SMALL_FORM_BYTES = 1024**2  # bytes: login and link forms

FILE_ASSETS = ("data_manager", "objective", *assets.ALGO_KINDS)
TUPLE_ASSETS = tuple(assets.get(kind).server for kind in assets.TUPLE_KINDS)
GET_ASSETS = (*FILE_ASSETS, *TUPLE_ASSETS, "compute_plan")

# field of a file route -> (Content-Type, download name or None for the stored name)
FILE_FIELDS: dict[str, tuple[str, str | None]] = {
    "description": ("text/markdown; charset=utf-8", "description.md"),
    "opener": ("text/x-python; charset=utf-8", "opener.py"),
    "metrics": ("application/octet-stream", None),
    "file": ("application/octet-stream", None),
    "model": ("application/octet-stream", None),
}


def _any(names: Iterable[str]) -> str:
    return "any(" + ", ".join(names) + ")"


def build_url_map() -> Map:
    """Every route of the protocol (the server names of the assets)."""
    get_assets = _any(GET_ASSETS)
    created = _any((*FILE_ASSETS, *TUPLE_ASSETS, "compute_plan"))
    algos = _any(assets.ALGO_KINDS)
    return Map(
        [
            Rule(LOGIN_PATH, methods=["POST"], endpoint="login"),
            Rule("/node/", methods=["GET"], endpoint="list_node"),
            Rule("/data_sample/", methods=["GET"], endpoint="list_data_samples"),
            Rule("/data_sample/", methods=["POST"], endpoint="add_data_samples"),
            Rule("/data_sample/bulk_update/", methods=["POST"], endpoint="bulk_update"),
            Rule(f"/<{get_assets}:asset>/", methods=["GET"], endpoint="list"),
            Rule(f"/<{created}:asset>/", methods=["POST"], endpoint="create"),
            Rule(f"/<{get_assets}:asset>/<key>/", methods=["GET"], endpoint="get"),
            Rule("/objective/<key>/leaderboard/", methods=["GET"], endpoint="leaderboard"),
            Rule("/compute_plan/<key>/update_ledger/", methods=["POST"], endpoint="update_plan"),
            Rule("/compute_plan/<key>/cancel/", methods=["POST"], endpoint="cancel_plan"),
            Rule("/data_manager/<key>/update_ledger/", methods=["POST"], endpoint="link_objective"),
            Rule(
                "/<any(data_manager):asset>/<key>/<any(opener, description):field>/",
                methods=["GET"],
                endpoint="file",
            ),
            Rule(
                "/<any(objective):asset>/<key>/<any(metrics, description):field>/",
                methods=["GET"],
                endpoint="file",
            ),
            Rule(
                f"/<{algos}:asset>/<key>/<any(file, description):field>/",
                methods=["GET"],
                endpoint="file",
            ),
            Rule("/model/<key>/file/", methods=["GET"], endpoint="model_file"),
        ],
        strict_slashes=True,
    )


def check_key(key: str, what: str = "key") -> str:
    """``key`` when it is 64 hexadecimal characters; BadRequest otherwise."""
    if not isinstance(key, str) or not KEY_RE.match(key):
        shown = key if isinstance(key, str) and len(key) <= 80 else f"{str(key)[:80]}..."
        raise BadRequest(f"{what} must be 64 hexadecimal characters, got {shown!r}")
    return key


class UploadSpool:
    """Temporary files in the node state folder receiving the file parts of one request.

    Passed to werkzeug's multipart parser as its ``stream_factory``; ``close()``
    removes every file, whatever the node did with them.
    """

    def __init__(self, folder: Path):
        self.folder = folder
        self._files: list[IO[bytes]] = []

    def __call__(
        self,
        total_content_length: int | None,
        content_type: str | None,
        filename: str | None,
        content_length: int | None = None,
    ) -> IO[bytes]:
        self.folder.mkdir(parents=True, exist_ok=True)
        handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed in close()
            dir=self.folder, prefix="part-", suffix=_safe_suffix(filename), delete=False
        )
        self._files.append(handle)
        return handle

    @staticmethod
    def path(storage: FileStorage) -> Path:
        """The file an uploaded part was written to, flushed to disk."""
        storage.stream.flush()
        return Path(storage.stream.name)  # type: ignore[union-attr]

    def close(self) -> None:
        for handle in self._files:
            handle.close()
            Path(handle.name).unlink(missing_ok=True)
        self._files.clear()


def _safe_suffix(filename: str | None) -> str:
    """The archive suffix of an uploaded file name (``.tar.gz``, ``.zip``...), if harmless."""
    if not filename:
        return ""
    suffix = "".join(Path(filename.replace("\\", "/")).suffixes[-2:])
    return suffix if re.fullmatch(r"(\.[A-Za-z0-9]{1,8}){1,2}", suffix) else ""


class NodeApp(JsonApp):
    """The WSGI application of the Substra protocol over one ``Node``."""

    log = log

    def __init__(
        self,
        node: Node,
        auth: Authenticator,
        *,
        upload_dir: str | Path,
        max_upload_bytes: int,
    ):
        self.node = node
        self.auth = auth
        self.upload_dir = Path(upload_dir)
        self.max_upload_bytes = max_upload_bytes
        self.url_map = build_url_map()

    # --- the one place errors become answers ----------------------------------------------

    def answer(self, request: Request, error: Exception) -> Response:
        if isinstance(error, NodeError):
            response = json_response(error.body(), error.status)
            if error.status == 401:
                response.headers["WWW-Authenticate"] = "Token"
            return response
        if isinstance(error, RequestRedirect):
            return error.get_response(request.environ)
        return super().answer(request, error)

    def _dispatch(self, request: Request) -> Response:
        if request.content_length is not None and request.content_length > self.max_upload_bytes:
            raise PayloadTooLarge(
                f"request body of {request.content_length} bytes is over the limit of "
                f"{self.max_upload_bytes} bytes"
            )
        if request.path != LOGIN_PATH:
            self.auth.authenticate(request.headers.get("Authorization"))
        adapter = self.url_map.bind_to_environ(request.environ)
        endpoint, args = adapter.match()
        return getattr(self, f"on_{endpoint}")(request, **args)

    # --- authentication ---------------------------------------------------------------

    def on_login(self, request: Request) -> Response:
        fields = self._small_fields(request)
        username, password = fields.get("username"), fields.get("password")
        if not isinstance(username, str) or not isinstance(password, str) or not username:
            raise BadRequest("username and password are required")
        return json_response(self.auth.login(username, password))

    # --- reads ------------------------------------------------------------------------

    def on_list_node(self, request: Request) -> Response:
        return json_response(self.node.list_node())

    def on_list_data_samples(self, request: Request) -> Response:
        return json_response(self.node.list("data_sample"))

    def on_list(self, request: Request, asset: str) -> Response:
        search = request.args.get("search") or None
        try:
            parse_search(search)
        except ValueError as e:
            raise BadRequest(f"invalid search filter: {e}") from e
        return json_response(self.node.list(asset, search))

    def on_get(self, request: Request, asset: str, key: str) -> Response:
        check_key(key)
        return json_response(self.node.get(asset, key))

    def on_leaderboard(self, request: Request, key: str) -> Response:
        check_key(key, "objective key")
        sort = request.args.get("sort", "desc")
        if sort not in ("asc", "desc"):
            raise BadRequest(f"sort must be 'asc' or 'desc', got {sort!r}")
        return json_response(self.node.leaderboard(key, sort))

    def on_file(self, request: Request, asset: str, key: str, field: str) -> Response:
        check_key(key)
        return self._send(request, self.node.file_path(asset, key, field), field)

    def on_model_file(self, request: Request, key: str) -> Response:
        check_key(key, "model hash")
        return self._send(request, self.node.file_path("model", key, "model"), "model")

    @staticmethod
    def _send(request: Request, path: Path, field: str) -> Response:
        mimetype, download_name = FILE_FIELDS[field]
        # send_file streams through the server's wsgi.file_wrapper: never read whole
        return send_file(
            path,
            request.environ,
            mimetype=mimetype,
            download_name=download_name,
            conditional=True,
            etag=True,
            max_age=None,
        )

    # --- creates ----------------------------------------------------------------------

    def on_create(self, request: Request, asset: str) -> Response:
        if asset in FILE_ASSETS:
            return self._create_file_asset(request, asset)
        data = self._json_object(request)
        if asset == "compute_plan":
            created = self.node.add_compute_plan(data)
        else:
            created = self.node.add_tuple(assets.get(asset).name, data)
        self.node.wake()
        return json_response(created, 201)

    def _create_file_asset(self, request: Request, asset: str) -> Response:
        expected = [part for _, part in assets.get(asset).files]
        spool = UploadSpool(self.upload_dir)
        try:
            form, files = self._multipart(request, spool, expected)
            data = self._json_field(form)
            unexpected = sorted(set(files) - set(expected))
            if unexpected:
                raise BadRequest(
                    f"unexpected file part(s) {', '.join(map(repr, unexpected))}: "
                    f"expected {', '.join(map(repr, expected))}"
                )
            paths = {part: spool.path(self._single_file(files, part)) for part in expected}
            if asset == "data_manager":
                created = self.node.add_dataset(data, paths)
            elif asset == "objective":
                created = self.node.add_objective(data, paths)
            else:
                created = self.node.add_algo(asset, data, paths)
        finally:
            spool.close()
        return json_response(created, 201)

    def on_add_data_samples(self, request: Request) -> Response:
        if request.mimetype != "multipart/form-data":
            if request.mimetype == "application/x-www-form-urlencoded":
                raise BadRequest(
                    "expected multipart/form-data (a 'json' field and one archive part per "
                    "sample) or a JSON body with 'path' or 'paths'"
                )
            data = self._json_object(request)
            if "path" not in data and "paths" not in data:
                raise BadRequest(
                    "a JSON data sample body needs 'path' or 'paths' (folders on the node); "
                    "to upload archives send multipart/form-data with a 'json' field"
                )
            return json_response(self.node.add_data_samples(data), 201)
        spool = UploadSpool(self.upload_dir)
        try:
            form, files = self._multipart(request, spool, ["path", "<sample folder name>"])
            data = self._json_field(form)
            if not files:
                raise BadRequest(
                    "no sample archive in the request: send one file part per sample folder "
                    "('path' for a single sample)"
                )
            leftover = data.get("paths")
            if isinstance(leftover, list) and leftover:
                # substra SDK <= 0.7 removed items from the list it iterated, so half the
                # folders stay in "paths" and are never uploaded: say so, it is data loss
                log.warning(
                    "a data sample upload left %d folder(s) out (listed in 'paths' but not "
                    "sent as archives): the client skipped them",
                    len(leftover),
                )
            archives: dict[str, Path] = {}
            for part in files:
                archives[part] = spool.path(self._single_file(files, part))
            created = self.node.add_data_samples(data, archives)
        finally:
            spool.close()
        return json_response(created, 201)

    # --- updates ----------------------------------------------------------------------

    def on_update_plan(self, request: Request, key: str) -> Response:
        check_key(key, "compute plan id")
        plan = self.node.update_compute_plan(key, self._json_object(request))
        self.node.wake()
        return json_response(plan)

    def on_cancel_plan(self, request: Request, key: str) -> Response:
        check_key(key, "compute plan id")
        plan = self.node.cancel_compute_plan(key)
        self.node.wake()
        return json_response(plan)

    def on_link_objective(self, request: Request, key: str) -> Response:
        check_key(key, "dataset key")
        objective_key = self._small_fields(request).get("objective_key")
        if not isinstance(objective_key, str):
            raise BadRequest("objective_key is required")
        check_key(objective_key, "objective_key")
        return json_response(self.node.update_dataset(key, objective_key))

    def on_bulk_update(self, request: Request) -> Response:
        fields = self._small_fields(request)
        dataset_keys = fields.getlist("data_manager_keys")
        sample_keys = fields.getlist("data_sample_keys")
        if not dataset_keys or not sample_keys:
            raise BadRequest("data_manager_keys and data_sample_keys are required")
        for key in dataset_keys:
            check_key(key, "data_manager_keys item")
        for key in sample_keys:
            check_key(key, "data_sample_keys item")
        return json_response(self.node.bulk_update_data_samples(dataset_keys, sample_keys))

    # --- body parsing -----------------------------------------------------------------

    def _json_object(self, request: Request) -> dict:
        """The request's JSON body, which must be an object."""
        raw = self._read_body(request, MAX_JSON_BYTES)
        if not raw.strip():
            raise BadRequest("a JSON object body is required")
        try:
            data = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise BadRequest(f"the body is not valid JSON: {e}") from e
        except RecursionError as e:
            raise BadRequest(f"the body is nested too deeply to be read as JSON: {e}") from e
        if not isinstance(data, dict):
            raise BadRequest(f"the JSON body must be an object, not {type(data).__name__}")
        return data

    @staticmethod
    def _read_body(request: Request, limit: int) -> bytes:
        if request.content_length is not None and request.content_length > limit:
            raise PayloadTooLarge(f"a JSON body is limited to {limit} bytes")
        raw = request.stream.read(limit + 1)
        if len(raw) > limit:
            raise PayloadTooLarge(f"a JSON body is limited to {limit} bytes")
        return raw

    def _small_fields(self, request: Request) -> MultiDict:
        """Fields of a small form (urlencoded or multipart) or JSON object body."""
        if request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data"):
            if request.content_length is not None and request.content_length > MAX_SMALL_FORM_BYTES:
                raise PayloadTooLarge(f"a form body is limited to {MAX_SMALL_FORM_BYTES} bytes")
            spool = UploadSpool(self.upload_dir)
            try:
                _, form, _ = parse_form_data(
                    request.environ,
                    stream_factory=spool,
                    max_form_memory_size=MAX_SMALL_FORM_BYTES,
                    max_content_length=MAX_SMALL_FORM_BYTES,
                    silent=False,
                )
            finally:
                spool.close()
            return form
        if request.mimetype == "application/json" or request.content_length:
            data = self._json_object(request)
            fields: MultiDict = MultiDict()
            for name, value in data.items():
                for item in value if isinstance(value, list) else [value]:
                    fields.add(name, item)
            return fields
        return MultiDict()

    def _multipart(
        self, request: Request, spool: UploadSpool, expected: list[str]
    ) -> tuple[MultiDict, MultiDict]:
        """Form fields and file parts, the files streamed into ``spool``."""
        if request.mimetype != "multipart/form-data":
            raise BadRequest(
                "expected a multipart/form-data body with a 'json' field and the file part(s) "
                + ", ".join(map(repr, expected))
            )
        try:
            _, form, files = parse_form_data(
                request.environ,
                stream_factory=spool,
                max_form_memory_size=MAX_FORM_MEMORY,
                max_content_length=self.max_upload_bytes,
                max_form_parts=MAX_FORM_PARTS,
                silent=False,
            )
        except ValueError as e:
            raise BadRequest(f"malformed multipart body: {e}") from e
        return form, files

    @staticmethod
    def _json_field(form: MultiDict) -> dict:
        raw = form.get("json")
        if raw is None:
            raise BadRequest("the multipart body needs a 'json' form field")
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as e:
            raise BadRequest(f"the 'json' form field is not valid JSON: {e}") from e
        except RecursionError as e:
            raise BadRequest(
                f"the 'json' form field is nested too deeply to be read as JSON: {e}"
            ) from e
        if not isinstance(data, dict):
            raise BadRequest("the 'json' form field must be a JSON object")
        return data

    @staticmethod
    def _single_file(files: MultiDict, part: str) -> FileStorage:
        found = files.getlist(part)
        if not found:
            raise BadRequest(f"missing file part {part!r}")
        if len(found) > 1:
            raise BadRequest(f"file part {part!r} was sent {len(found)} times")
        return found[0]


def _upload_folder(uploads: Path) -> Path:
    """A folder of ``uploads`` for this process, after removing those of dead processes.

    Several node processes may share a state folder, so each spools into its own.
    """
    uploads.mkdir(parents=True, exist_ok=True)
    for folder in uploads.iterdir():
        pid = pids.owner(folder.name)
        if pid is not None and not pids.alive(pid):
            shutil.rmtree(folder, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f"{os.getpid()}-", dir=uploads))


class NodeServer(WaitressServer):
    """A ``Node`` behind waitress: bind, ``run()`` until ``stop()``, then shut down cleanly."""

    name = "substra-worker-node"

    def __init__(
        self,
        settings: Settings,
        *,
        users: Mapping[str, str],
        data_roots: Iterable[str | Path] = (),
        threads: int = 8,
        sock: socket.socket | None = None,
        compute: bool = True,
    ):
        """``sock``: serve a socket shared with other node processes (``node_processes``);
        ``compute``: run tuples in this process (one of them does; claims are per tuple)."""
        node_dir = Path(settings.node_state_dir)
        node_dir.mkdir(parents=True, exist_ok=True)
        self.upload_dir = _upload_folder(node_dir / "uploads")
        self.node = Node(
            node_dir,
            node_id=settings.node_id,
            concurrency=settings.node_concurrency,
            step_timeout=settings.step_timeout,
            python=settings.python,
            data_roots=tuple(str(Path(root).resolve()) for root in data_roots),
        )
        self._node_started = False
        self.auth = Authenticator(users, TokenStore(node_dir / "auth.db", settings.token_ttl))
        self.app = NodeApp(
            self.node,
            self.auth,
            upload_dir=self.upload_dir,
            max_upload_bytes=settings.max_upload_bytes,
        )
        try:
            self._bind(
                self.app,
                host=settings.node_host,
                port=settings.node_port,
                threads=threads,
                max_request_body_size=settings.max_upload_bytes,
                sock=sock,
            )
        except BaseException:
            self._close_node()
            raise
        self.node.base_url = self.url
        self.compute = compute

    def _on_start(self) -> None:
        if self.compute:
            self.node.start()
            self._node_started = True

    def _on_shutdown(self) -> None:
        log.info("shutting down")
        self._close_node()

    def _close_node(self) -> None:
        try:
            if self._node_started:
                self.node.stop()
        finally:
            self.node.close()
            self.auth.close()
            shutil.rmtree(self.upload_dir, ignore_errors=True)
