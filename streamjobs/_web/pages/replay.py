"""Replay: the plan of ``replay offsets`` first (nothing changes), then an explicit
confirmation to apply it; refused while the group has members, as in the CLI."""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import ImmutableMultiDict
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..._ops import replay as rp
from ...errors import GroupActive, StreamjobsError, TopicNotFound
from ..render import page
from ..state import web

__all__ = ["routes"]

MODES = {"to_earliest": "to the log start", "to_latest": "to the log end (skip pending)",
         "to_offset": "to offset", "shift_by": "shift by N (negative: back)",
         "to_datetime": "to a time (ISO 8601 or 2h ago)"}


def _spec(mode: str, value: str) -> rp.ResetSpec:
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}")
    if mode in ("to_earliest", "to_latest"):
        return rp.ResetSpec(mode)  # type: ignore[arg-type]
    if not value.strip():
        raise ValueError(f"{MODES[mode]}: give a value")
    if mode == "to_datetime":
        return rp.ResetSpec("to_datetime", rp.parse_when(value))
    try:
        return rp.ResetSpec(mode, int(value))  # type: ignore[arg-type]
    except ValueError:
        raise ValueError(f"{MODES[mode]}: {value!r} is not a whole number") from None


def _form(values: ImmutableMultiDict[str, Any]) -> dict[str, str]:
    return {n: str(values.get(n) or "").strip() for n in ("group", "topics", "mode", "value")}


def _parse(form: dict[str, str]) -> tuple[str, list[tuple[str, tuple[int, ...] | None]],
                                          rp.ResetSpec]:
    if not form["group"]:
        raise ValueError("give the consumer group")
    topics = [t for t in form["topics"].replace(",", " ").split() if t]
    if not topics:
        raise ValueError("give at least one topic (TOPIC or TOPIC:0;1 for some partitions)")
    parsed = [rp.parse_topic_spec(t.replace(";", ",")) for t in topics]
    return form["group"], parsed, _spec(form["mode"] or "to_earliest", form["value"])


async def _plan(request: Request, form: dict[str, str], execute: bool) -> Response:
    w = web(request)
    ctx: dict[str, Any] = {"form": form, "modes": MODES, "plan": None, "error": None,
                           "refused": None, "executed": False, "groups": w.sources.groups}
    if not form["group"] and not form["topics"]:
        return page(request, "replay.html", **ctx)
    try:
        group, topics, spec = _parse(form)
        plan = await run_in_threadpool(rp.plan_reset, w.sources.config, group, topics, spec)
        if execute:
            await run_in_threadpool(rp.apply_reset, w.sources.config, plan)
            w.metrics.actions.labels("replay", "ok").inc()
        ctx.update(plan=plan, executed=execute)
    except GroupActive as exc:
        if execute:
            w.metrics.actions.labels("replay", "refused").inc()
        ctx["refused"] = str(exc)
    except (ValueError, TopicNotFound, StreamjobsError) as exc:
        ctx["error"] = str(exc)
    code = 409 if ctx["refused"] else 400 if ctx["error"] else 200
    return page(request, "replay.html", status_code=code, **ctx)


async def replay(request: Request) -> Response:
    if request.method == "GET":
        return await _plan(request, _form(request.query_params), execute=False)
    w = web(request)
    form = await request.form()
    refusal = w.guard.refusal(request, str(form.get("csrf") or ""))
    if refusal is not None:
        w.metrics.actions.labels("replay", "refused").inc()
        return page(request, "error.html", status_code=403, message=refusal)
    return await _plan(request, _form(form), execute=form.get("confirm") == "yes")


routes = [Route("/replay", replay, methods=["GET", "POST"])]
