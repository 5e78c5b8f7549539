"""What each operation does on the node, written so that running it twice does it once.

A job may run more than once: redelivered after its worker died, or retried
after an attempt whose outcome is unknown (a timeout, a 5xx, a lost
connection — the node may have done the work). So from the second attempt on:

- creates use ``exist_ok``: the node's 409 names the asset an earlier attempt
  made, and that counts as success with its key;
- compute plans, whose ids are random, carry the job id in their metadata
  (``substra_worker_job``); a retry looks for that plan before sending again,
  and ``update_compute_plan`` stamps the tuples it adds the same way;
- bulk sample uploads record each finished batch, resume after the last one,
  and register a batch that meets a 409 sample by sample with ``exist_ok``;
- links and cancels check whether the node already shows the effect;
- downloads write into a temporary folder and rename into place.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from substra_worker.envelope import Operation, confine_destination
from substra_worker.sdk import exceptions as sdk
from substra_worker.sdk.client import Client
from substra_worker.settings import Settings
from substra_worker.status_store import StatusStore
from substra_worker.tasks.errors import PermanentError

STAMP = "substra_worker_job"  # metadata key carrying the id of the job that made an asset
TUPLE_LISTS = {  # update/add_compute_plan field -> tuple asset listed to find stamped tuples
    "traintuples": "traintuple",
    "composite_traintuples": "composite_traintuple",
    "aggregatetuples": "aggregatetuple",
    "testtuples": "testtuple",
}


@dataclass
class Context:
    """Everything an effect needs for one attempt of one job."""

    job_id: str
    operation: Operation
    payload: dict[str, Any]  # references already resolved
    options: dict[str, Any]
    attempt: int  # number of this attempt over the job's life, from 1
    client: Client
    store: StatusStore
    settings: Settings

    @property
    def repeat(self) -> bool:
        """Whether an earlier attempt may already have had an effect on the node."""
        return self.attempt > 1

    @property
    def exist_ok(self) -> bool:
        return bool(self.options.get("exist_ok")) or self.repeat

    def result(self, key: str | None, answer: Any, **extra: Any) -> dict[str, Any]:
        return self.store.bounded_result(key, answer, **extra)


def run(ctx: Context) -> dict[str, Any]:
    """Perform the job's operation; return the result to record."""
    op = ctx.operation
    if op.name == "add_data_samples":
        return add_data_samples(ctx)
    if op.name == "add_compute_plan":
        return add_compute_plan(ctx)
    if op.name == "update_compute_plan":
        return update_compute_plan(ctx)
    if op.name == "cancel_compute_plan":
        return cancel_compute_plan(ctx)
    if op.name == "link_dataset_with_objective":
        return link_dataset_with_objective(ctx)
    if op.name == "link_dataset_with_data_samples":
        return link_dataset_with_data_samples(ctx)
    if op.download:
        return download(ctx)
    return add_asset(ctx)


def asset_key(answer: Any) -> str | None:
    """The key in a node answer: ``key``, else ``pkhash``, else ``computePlanID``."""
    if isinstance(answer, list) and len(answer) == 1:
        answer = answer[0]
    if isinstance(answer, dict):
        for name in ("key", "pkhash", "computePlanID"):
            if answer.get(name):
                return answer[name]
    return None


def add_asset(ctx: Context) -> dict[str, Any]:
    """Every single-key create: data sample, dataset, objective, algos, tuples."""
    method: Callable[..., Any] = getattr(ctx.client, ctx.operation.name)
    kwargs: dict[str, Any] = {"exist_ok": ctx.exist_ok}
    if ctx.operation.local:
        kwargs["local"] = ctx.options.get("local", True)
    try:
        answer = method(ctx.payload, **kwargs)
    except sdk.AlreadyExists as e:
        # exist_ok was off: an asset the job did not create
        raise PermanentError(f"{e} (already exists: {e.pkhash})") from e
    key = asset_key(answer)
    if key is None:
        raise PermanentError(f"the node's answer carries no key: {str(answer)[:200]}")
    return ctx.result(key, answer)


# --- data samples in bulk ---------------------------------------------------------------


def add_data_samples(ctx: Context) -> dict[str, Any]:
    """Upload ``paths`` in batches; resume after the last recorded batch."""
    paths: list[str] = list(ctx.payload["paths"])
    common = {k: v for k, v in ctx.payload.items() if k != "paths"}
    local = ctx.options.get("local", True)
    size = max(1, ctx.settings.batch_size)
    done = len(ctx.store.sample_keys(ctx.job_id))
    ctx.store.set_fields(ctx.job_id, progress={"done": done, "total": len(paths)})
    while done < len(paths):
        batch = paths[done : done + size]
        keys = _add_batch(ctx, batch, common, local)
        if len(keys) != len(batch):
            raise PermanentError(f"the node answered {len(keys)} keys for {len(batch)} samples")
        done = ctx.store.append_keys(ctx.job_id, keys, expected=done)
        ctx.store.set_fields(ctx.job_id, progress={"done": done, "total": len(paths)})
    keys = ctx.store.sample_keys(ctx.job_id)
    return ctx.result(None, None, count=len(keys))


def _add_batch(ctx: Context, batch: list[str], common: dict[str, Any], local: bool) -> list[str]:
    try:
        if len(batch) == 1:
            # one path: the single-sample call, so that exist_ok applies
            data = {"path": batch[0], **common}
            return [asset_key(ctx.client.add_data_sample(data, local=local, exist_ok=ctx.exist_ok))]
        answer = ctx.client.add_data_samples({"paths": batch, **common}, local=local)
    except sdk.AlreadyExists as e:
        if not ctx.exist_ok:
            raise PermanentError(f"{e} (already exist: {e.pkhash})") from e
        # some samples of the batch exist (an earlier attempt's work): one by one
        return [
            asset_key(ctx.client.add_data_sample({"path": p, **common}, local=local, exist_ok=True))
            for p in batch
        ]
    if not isinstance(answer, list):
        answer = [answer]
    return [asset_key(item) for item in answer]


# --- compute plans --------------------------------------------------------------------------


def _stamped(metadata: Any, job_id: str) -> dict[str, Any]:
    stamped = dict(metadata or {})
    stamped[STAMP] = job_id
    return stamped


def _carries(asset: Any, job_id: str) -> bool:
    return isinstance(asset, dict) and (asset.get("metadata") or {}).get(STAMP) == job_id


def add_compute_plan(ctx: Context) -> dict[str, Any]:
    data = dict(ctx.payload)
    data["metadata"] = _stamped(data.get("metadata"), ctx.job_id)
    if ctx.repeat:
        existing = next(
            (p for p in ctx.client.list_compute_plan() if _carries(p, ctx.job_id)), None
        )
        if existing is not None:
            return _plan_result(ctx, existing)
    try:
        answer = ctx.client.add_compute_plan(data)
    except sdk.RequestTimeout as e:
        if not e.pkhash:
            raise
        # the node took it but did not confirm in time: read it back
        answer = ctx.client.get_compute_plan(e.pkhash)
    return _plan_result(ctx, answer)


def _plan_result(ctx: Context, plan: dict[str, Any]) -> dict[str, Any]:
    key = plan.get("computePlanID") or asset_key(plan)
    return ctx.result(key, plan, id_to_key=plan.get("IDToKey"))


def update_compute_plan(ctx: Context) -> dict[str, Any]:
    plan_id = ctx.payload["compute_plan_id"]
    data = {
        field: [dict(item, metadata=_stamped(item.get("metadata"), ctx.job_id)) for item in items]
        if field in TUPLE_LISTS and isinstance(items, list)
        else items
        for field, items in ctx.payload["data"].items()
    }
    if ctx.repeat and _update_applied(ctx, plan_id, data):
        return _plan_result(ctx, ctx.client.get_compute_plan(plan_id))
    return _plan_result(ctx, ctx.client.update_compute_plan(plan_id, data))


def _update_applied(ctx: Context, plan_id: str, data: dict[str, Any]) -> bool:
    """Whether the plan already holds a tuple stamped by this job."""
    for field, asset in TUPLE_LISTS.items():
        if not data.get(field):
            continue
        lister = getattr(ctx.client, f"list_{asset}")
        for item in lister():
            if item.get("computePlanID") == plan_id and _carries(item, ctx.job_id):
                return True
    return False


def cancel_compute_plan(ctx: Context) -> dict[str, Any]:
    plan_id = ctx.payload["compute_plan_id"]
    try:
        answer = ctx.client.cancel_compute_plan(plan_id)
    except sdk.InvalidRequest:
        if ctx.repeat:
            plan = ctx.client.get_compute_plan(plan_id)
            if plan.get("status") == "canceled":
                return _plan_result(ctx, plan)
        raise
    return ctx.result(plan_id, answer)


# --- links ------------------------------------------------------------------------------------


def link_dataset_with_objective(ctx: Context) -> dict[str, Any]:
    dataset_key = ctx.payload["dataset_key"]
    objective_key = ctx.payload["objective_key"]
    try:
        answer = ctx.client.link_dataset_with_objective(dataset_key, objective_key)
    except (sdk.InvalidRequest, sdk.AlreadyExists):
        if ctx.repeat and ctx.client.get_dataset(dataset_key).get("objectiveKey") == objective_key:
            return ctx.result(dataset_key, {"pkhash": dataset_key})
        raise
    return ctx.result(dataset_key, answer)


def link_dataset_with_data_samples(ctx: Context) -> dict[str, Any]:
    dataset_key = ctx.payload["dataset_key"]
    keys = list(ctx.payload["data_sample_keys"])
    try:
        answer = ctx.client.link_dataset_with_data_samples(dataset_key, keys)
    except (sdk.InvalidRequest, sdk.AlreadyExists):
        if ctx.repeat:
            dataset = ctx.client.get_dataset(dataset_key)
            linked = set(dataset.get("trainDataSampleKeys") or []) | set(
                dataset.get("testDataSampleKeys") or []
            )
            if linked.issuperset(keys):
                return ctx.result(dataset_key, None, keys=keys)
        raise
    return ctx.result(dataset_key, answer)


# --- downloads --------------------------------------------------------------------------------


def download(ctx: Context) -> dict[str, Any]:
    """Download into a temporary folder beside the destination, then rename into place."""
    key = ctx.payload["key"]
    try:
        destination = Path(
            confine_destination(ctx.options["destination"], ctx.settings.download_root)
        )
    except sdk.InvalidInput as e:
        raise PermanentError(str(e)) from e
    destination.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".download-", dir=destination))
    try:
        written = Path(getattr(ctx.client, ctx.operation.name)(key, str(tmp)))
        if not written.is_absolute():
            written = tmp / written
        final = destination / written.name
        os.replace(written, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return ctx.result(key, {"path": str(final)}, path=str(final))
