"""What reading a job's metadata costs the worker per record, legacy five headers vs compact.

    .venv/bin/python bench/metadata.py [--records 20000] [--bootstrap-servers HOST:PORT]

Produces N records in each form to a fresh topic, then times per record, best of 5, each time
on freshly consumed ``Message`` objects (``headers()`` builds its list on the first call only, as
in the worker, and caches it):
  legacy_inline  headers() + the scan the worker's intake did before the compact form existed
                 (an inline loop over the five headers), on five-header records: the "before"
  legacy_scan    headers() + ``headers.scan`` (today's one reader), on five-header records
  compact_scan   headers() + ``headers.scan``, on records as ``emit`` writes them now: "after"
  compact_meta   headers() + ``JobMeta.from_headers`` (the cold-path reader: dlq, testing, ...)
  headers_only   headers() alone, per form
The last line is one JSON object with every figure (microseconds per record).
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from typing import Any

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from streamjobs import _headers as h

_TYPE, _ID, _ATTEMPT, _CREATED = h.JOB_TYPE, h.JOB_ID, h.ATTEMPT, h.CREATED_AT


def legacy_inline(msgs: list[Any]) -> None:
    for m in msgs:
        hdrs = m.headers()
        type_b = id_b = a = c = None
        if hdrs:
            for k, v in hdrs:
                if k == _TYPE:
                    type_b = v
                elif k == _ID:
                    id_b = v
                elif k == _ATTEMPT:
                    a = v
                elif k == _CREATED:
                    c = v
        del type_b, id_b, a, c


def with_scan(msgs: list[Any]) -> None:
    scan = h.scan
    for m in msgs:
        scan(m.headers())


def with_meta(msgs: list[Any]) -> None:
    read = h.JobMeta.from_headers
    for m in msgs:
        read(m.headers(), m.timestamp()[1])


def headers_only(msgs: list[Any]) -> None:
    for m in msgs:
        m.headers()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=20_000)
    ap.add_argument("--bootstrap-servers", default="127.0.0.1:9092")
    a = ap.parse_args()
    conf = {"bootstrap.servers": a.bootstrap_servers}
    admin = AdminClient(conf)
    topic = f"bench-metadata-{uuid.uuid4().hex[:8]}"
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
    try:
        p = Producer({**conf, "linger.ms": 20})
        now = str(int(time.time() * 1000)).encode()
        for i in range(2 * a.records):
            job_id = h.new_job_id()
            hdrs: list[tuple[str, bytes | str]] = (
                [(h.JOB_ID, job_id.encode()), (h.CREATED_AT, now),
                 (h.JOB_TYPE, b"send_welcome_email"), (h.ATTEMPT, b"1"),
                 (h.SCHEMA, b"0123456789abcdef")] if i < a.records
                else [(h.META, h.compact(job_id, "send_welcome_email"))])
            p.produce(topic, b"v", b"k", headers=hdrs)
            if i % 10_000 == 0:
                p.poll(0)
        p.flush(60)

        def fresh(compact: bool) -> list[Any]:
            """Every record of one form, as new Message objects (nothing cached yet)."""
            c = Consumer({**conf, "group.id": f"{topic}-{uuid.uuid4().hex}",
                          "auto.offset.reset": "earliest"})
            c.subscribe([topic])
            msgs: list[Any] = []
            deadline = time.monotonic() + 60
            while len(msgs) < 2 * a.records and time.monotonic() < deadline:
                msgs += [m for m in c.consume(1000, 1.0) if m.error() is None]
            c.close()
            return msgs[a.records:] if compact else msgs[:a.records]

        def us(fn: Any, compact: bool) -> float:
            times = []
            for _ in range(5):
                batch = fresh(compact)
                start = time.perf_counter()
                fn(batch)
                times.append((time.perf_counter() - start) / len(batch) * 1e6)
            return round(min(times), 3)

        out = {"records": a.records,
               "legacy_inline_us": us(legacy_inline, False),
               "legacy_scan_us": us(with_scan, False),
               "compact_scan_us": us(with_scan, True),
               "compact_meta_us": us(with_meta, True),
               "legacy_headers_only_us": us(headers_only, False),
               "compact_headers_only_us": us(headers_only, True)}
    finally:
        admin.delete_topics([topic])[topic].result(30)
    for k, v in out.items():
        print(f"{k:<26} {v}")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
