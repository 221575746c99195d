"""Dead letters: filter, open one, reprocess a selection (dry-run preview, then confirm).

Reprocessing runs ``streamjobs._ops.reprocess.Reprocessor``, the CLI's own code: the same
re-validation, progress topic (each dead letter re-published at most once across runs) and
fencing.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, ImmutableMultiDict
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..._ops import dlq
from ..._ops.replay import parse_when
from ..._ops.reprocess import Report, Reprocessor, load_progress
from ...errors import StreamjobsError, TopicNotFound
from ..render import page
from ..state import WebState, web

__all__ = ["routes"]

LIMIT = 200
_FIELDS = ("topic", "job_type", "reason", "exception", "key", "since", "until")


@dataclass(frozen=True)
class Selection(dlq.Filter):
    """Exactly the dead letters ticked on the page: (partition, offset) pairs."""

    picked: frozenset[tuple[int, int]] = frozenset()

    def matches(self, dl: dlq.DeadLetter) -> bool:
        return (dl.partition, dl.offset) in self.picked


def _one(values: ImmutableMultiDict[str, Any], name: str) -> frozenset[str]:
    v = str(values.get(name) or "").strip()
    return frozenset({v}) if v else frozenset()


def _filter(values: ImmutableMultiDict[str, Any]) -> dlq.Filter:
    """ValueError (shown on the page) for a bad reason or time."""
    since, until = (str(values.get(n) or "").strip() for n in ("since", "until"))
    return dlq.Filter(job_types=_one(values, "job_type"), reasons=_one(values, "reason"),
                      exception_classes=_one(values, "exception"), keys=_one(values, "key"),
                      since_ms=parse_when(since) if since else None,
                      until_ms=parse_when(until) if until else None)


def _topic(w: WebState, values: ImmutableMultiDict[str, Any]) -> str | None:
    """The dead-letter topic asked for; only the catalogue's when one is loaded."""
    known = w.sources.dlq_topics()
    wanted = str(values.get("topic") or "").strip()
    if not wanted:
        return known[0] if known else None
    name = dlq.dlq_name(wanted)
    if known and name not in known:
        raise ValueError(f"{name} is not a dead-letter topic of the catalogue")
    return name


def _read(w: WebState, topic: str, flt: dlq.Filter) -> dict[str, Any]:
    describer = dlq.Describer(w.sources.codec)
    try:
        _, records = dlq.read(w.sources.config, topic, flt)
        done = load_progress(w.sources.config, topic)
    except TopicNotFound:
        return {"stories": [], "truncated": False, "missing": True}
    newest: deque[dlq.DeadLetter] = deque(maxlen=LIMIT)
    matched = 0
    for dl in records:
        newest.append(dl)
        matched += 1
    stories = []
    for dl in sorted(newest, key=lambda d: d.dlq_at, reverse=True):
        story = describer.story(dl, trace=False)
        story["reprocessed"] = (dl.partition, dl.offset) in done
        stories.append(story)
    return {"stories": stories, "matched": matched, "truncated": matched > len(stories),
            "missing": False}


async def listing(request: Request) -> Response:
    w = web(request)
    q = request.query_params
    form = {n: q.get(n, "") for n in _FIELDS}
    try:
        topic = _topic(w, q)
        flt = _filter(q)
    except ValueError as exc:
        return page(request, "deadletters.html", status_code=400, form=form, error=str(exc),
                    topics=w.sources.dlq_topics(), topic=None, result=None,
                    reasons=dlq.REASONS)
    result = None
    error = None
    if topic is not None:
        try:
            result = await run_in_threadpool(_read, w, topic, flt)
        except StreamjobsError as exc:
            error = str(exc)
    form["topic"] = topic or ""
    return page(request, "deadletters.html", form=form, error=error, topic=topic,
                topics=w.sources.dlq_topics(), result=result, reasons=dlq.REASONS)


async def detail(request: Request) -> Response:
    w = web(request)
    p = request.path_params
    topic = dlq.dlq_name(p["topic"])
    try:
        dl = await run_in_threadpool(dlq.fetch, w.sources.config, topic, p["partition"],
                                     p["offset"])
    except TopicNotFound:
        dl = None
    if dl is None:
        return page(request, "error.html", status_code=404,
                    message=f"No record at {topic} partition {p['partition']} offset "
                            f"{p['offset']}.")
    story = dlq.Describer(w.sources.codec).story(dl)
    return page(request, "deadletter.html", topic=topic, story=story,
                raw_hex=(dl.value or b"").hex())


def _selection(form: FormData) -> tuple[dict[int, Selection], list[str]]:
    """Per partition, the ticked offsets (``ref`` fields ``P/O``)."""
    picked: dict[int, set[int]] = {}
    refs = []
    for ref in form.getlist("ref"):
        part, _, off = str(ref).partition("/")
        if not (part.isdigit() and off.isdigit()):
            raise ValueError(f"bad selection {ref!r}")
        picked.setdefault(int(part), set()).add(int(off))
        refs.append(f"{part}/{off}")
    return ({p: Selection(partition=p, from_offset=min(o), to_offset=max(o),
                          picked=frozenset((p, x) for x in o)) for p, o in picked.items()}, refs)


def _reprocess(w: WebState, topic: str, filters: list[dlq.Filter], execute: bool) -> Report:
    """One report for the whole selection (one Reprocessor run per partition picked)."""
    total = Report(topic, execute)
    for flt in filters:
        run = Reprocessor(w.sources.config, w.sources.codec, topic, flt, execute=execute)
        run.open()
        r = run.run()
        total.scanned += r.scanned
        total.matched += r.matched
        total.already += r.already
        total.published += r.published
        total.rejected += r.rejected
        total.failed += r.failed
    return total


async def reprocess(request: Request) -> Response:
    w = web(request)
    form = await request.form()
    refusal = w.guard.refusal(request, str(form.get("csrf") or ""))
    if refusal is not None:
        w.metrics.actions.labels("reprocess", "refused").inc()
        return page(request, "error.html", status_code=403, message=refusal)
    confirm = form.get("confirm") == "yes"
    fields = {n: str(form.get(n) or "") for n in _FIELDS}
    try:
        topic = _topic(w, form)
        if topic is None:
            raise ValueError("no dead-letter topic")
        if form.get("scope") == "matching":
            filters: list[dlq.Filter] = [_filter(form)]
            refs: list[str] = []
        else:
            by_part, refs = _selection(form)
            filters = list(by_part.values())
            if not filters:
                raise ValueError("tick at least one dead letter, or reprocess all matching")
        report = await run_in_threadpool(_reprocess, w, topic, filters, confirm)
    except (ValueError, StreamjobsError) as exc:
        w.metrics.actions.labels("reprocess", "failed").inc()
        return page(request, "error.html", status_code=400, message=str(exc))
    if confirm:
        w.metrics.actions.labels("reprocess", "ok" if report.ok else "failed").inc()
    return page(request, "reprocess.html", report=report, topic=topic, refs=refs,
                scope=form.get("scope") or "selected", fields=fields, executed=confirm)


routes = [
    Route("/dead-letters", listing),
    Route("/dead-letters/reprocess", reprocess, methods=["POST"]),
    Route("/dead-letters/{topic}/{partition:int}/{offset:int}", detail),
]
