"""Client has every method of the reference document, with its parameter names and defaults."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import pytest

from substra_worker.sdk import Client

REFERENCE = "substra-sdk-client-api.md"
_ROOT = Path(__file__).resolve().parents[2]
CANDIDATES = [_ROOT.parent / "shared" / "seed" / REFERENCE, Path("/work/shared/seed") / REFERENCE]

_SIGNATURE = re.compile(r"^Client(?:\.(?P<name>\w+))?\((?P<params>.*)\)\s*$")
_KINDS = inspect.Parameter


def reference_path() -> Path:
    for path in CANDIDATES:
        if path.is_file():
            return path
    pytest.fail(f"reference document not found in {[str(p) for p in CANDIDATES]}")


def reference_signatures() -> dict[str, list[tuple[str, inspect._ParameterKind, object]]]:
    """``{method name ('__init__' for the constructor): [(name, kind, default)]}``."""
    text = reference_path().read_text()
    signatures = {}
    for block in re.findall(r"```python\n(.*?)```", text, flags=re.S):
        for line in block.strip().splitlines():
            match = _SIGNATURE.match(line.strip())
            if match:
                name = match["name"] or "__init__"
                signatures[name] = _parameters(match["params"])
    return signatures


def _parameters(params: str) -> list[tuple[str, inspect._ParameterKind, object]]:
    # the annotations (Union[str, NoneType], pathlib.Path...) are parsed, never evaluated
    args = ast.parse(f"def f({params}): pass").body[0].args
    out: list[tuple[str, inspect._ParameterKind, object]] = []
    positional = args.posonlyargs + args.args
    defaults = [_NO_DEFAULT] * (len(positional) - len(args.defaults)) + [
        ast.literal_eval(d) for d in args.defaults
    ]
    for i, (arg, default) in enumerate(zip(positional, defaults, strict=True)):
        kind = _KINDS.POSITIONAL_ONLY if i < len(args.posonlyargs) else _KINDS.POSITIONAL_OR_KEYWORD
        out.append((arg.arg, kind, default))
    if args.vararg:
        out.append((args.vararg.arg, _KINDS.VAR_POSITIONAL, _NO_DEFAULT))
    for arg, default in zip(args.kwonlyargs, args.kw_defaults, strict=True):
        value = _NO_DEFAULT if default is None else ast.literal_eval(default)
        out.append((arg.arg, _KINDS.KEYWORD_ONLY, value))
    if args.kwarg:
        out.append((args.kwarg.arg, _KINDS.VAR_KEYWORD, _NO_DEFAULT))
    return out


_NO_DEFAULT = inspect.Parameter.empty


def implemented(name: str) -> list[tuple[str, inspect._ParameterKind, object]]:
    signature = inspect.signature(getattr(Client, name))
    return [(p.name, p.kind, p.default) for p in signature.parameters.values()]


SIGNATURES = reference_signatures()


def test_the_reference_document_was_parsed():
    # constructor, login, from_config_file, 12 add, 10 get, 11 list, list_node, 2 plan
    # updates, 2 links, 5 downloads, 5 describes, leaderboard
    assert len(SIGNATURES) == 52
    assert {"__init__", "from_config_file", "add_data_samples", "list_node"} <= set(SIGNATURES)


@pytest.mark.parametrize("name", sorted(SIGNATURES))
def test_client_method_matches_the_reference(name):
    assert hasattr(Client, name), f"Client has no {name}"
    assert implemented(name) == SIGNATURES[name]
