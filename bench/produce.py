"""Emit throughput against raw confluent-kafka produce, in one run on the same broker.

    .venv/bin/python bench/produce.py [-n 200000] [--rounds 3] [--bootstrap-servers HOST:PORT]

Every loop uses one fresh 6-partition topic and the same client settings (idempotent, acks=all,
one request in flight, linger.ms=5), each followed by flush(); the loops of a round run one
after the other, rounds repeat (A B A B...):
  raw         confluent_kafka.Producer.produce(topic, value, key) of values encoded beforehand
  raw_encode  the same with fastavro encoding each payload in the loop (the issue's baseline)
  emit        streamjobs Producer.emit(job_type, payload): validate + Avro encode + id + header
  emit_many   Producer.emit_many of batches of 1000 (target: faster than the emit loop)
  raw+headers raw with the job header emit writes (``sj``, built once), for reference
Ratios are medians of the per-round ratios: emit_vs_raw_encode (target >= 1.0),
emit_many_vs_emit (>= 1.0); R_produce = emit / raw (pre-encoded; best rate of each side).
Per-record breakdown (microseconds): wall time per record of each loop; emit's own Python work
with the Kafka client stubbed out (Codec.encode, the job id, the rest); and (``client_*``) the
process CPU per record of raw produce loops that differ in one thing: no header, the ``sj``
header as text or bytes, in a list or a dict, passed by keyword or by position, a
producer-wide delivery callback with every report or with ``delivery.report.only.error``.
Also fastavro encode/decode next to orjson. The last line is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import statistics
import sys
import tempfile
import time
import timeit
import uuid
from pathlib import Path
from typing import Any

import fastavro
import orjson
from confluent_kafka import Producer as KafkaProducer
from confluent_kafka.admin import AdminClient, NewTopic

from streamjobs import _headers as h
from streamjobs._avro.codec import Codec
from streamjobs._config import KafkaConfig
from streamjobs._delivery import PRODUCER_SETTINGS
from streamjobs._headers import new_job_id
from streamjobs._producer import Producer
from streamjobs._schemas.catalogue import Catalogue

ROOT = Path(__file__).resolve().parent.parent
JOB = "send_welcome_email"
LINGER_MS = 5


def catalogue_for(topic: str, tmp: Path) -> Catalogue:
    for f in (ROOT / "schemas").glob("demo.WelcomeEmail.v*.avsc"):
        shutil.copy(f, tmp)
    (tmp / "catalogue.toml").write_text(
        f'[jobs.{JOB}]\nschema = "demo.WelcomeEmail"\ntopic = "{topic}"\n'
        f'key_field = "user_id"\npartitions = 6\n')
    return Catalogue.load(tmp)


def payloads(n: int) -> list[dict[str, Any]]:
    return [{"user_id": f"user-{i}", "email": f"user{i}@example.com", "locale": "en"}
            for i in range(n)]


def raw_run(config: KafkaConfig, topic: str, values: list[bytes], keys: list[bytes],
            headers: list[tuple[str, str | bytes | None]] | None = None) -> float:
    # The client settings emit's producer uses (idempotent, acks=all, one request in flight).
    p = KafkaProducer({**config.client_settings(), **PRODUCER_SETTINGS, "linger.ms": LINGER_MS})
    p.list_topics(timeout=10)
    start = time.perf_counter()
    produce = p.produce
    for value, key in zip(values, keys, strict=True):
        while True:
            try:
                produce(topic, value, key, headers=headers)
                break
            except BufferError:
                p.poll(0.05)
    if p.flush(60):
        raise SystemExit("raw: records left after flush")
    return len(values) / (time.perf_counter() - start)


def raw_encode_run(config: KafkaConfig, topic: str, parsed: Any, prefix: bytes,
                   data: list[dict[str, Any]]) -> float:
    """The hand-written loop: fastavro-encode each payload (with streamjobs' framing prefix,
    as bench/peer_systems.py raw_encode does) and produce it with its key, value and key only.
    The key comes from the payload's ``user_id`` in the loop, as emit's from its key_field."""
    p = KafkaProducer({**config.client_settings(), **PRODUCER_SETTINGS, "linger.ms": LINGER_MS})
    p.list_topics(timeout=10)
    start = time.perf_counter()
    produce, writer = p.produce, fastavro.schemaless_writer
    for payload in data:
        key = payload["user_id"].encode()
        buf = io.BytesIO()
        buf.write(prefix)
        writer(buf, parsed, payload)
        value = buf.getvalue()
        while True:
            try:
                produce(topic, value, key)
                break
            except BufferError:
                p.poll(0.05)
    if p.flush(60):
        raise SystemExit("raw_encode: records left after flush")
    return len(data) / (time.perf_counter() - start)


_SJ = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b;" + JOB


def _report(err: Any, msg: Any) -> None:
    if err is not None:
        raise SystemExit(f"client parts: delivery failed: {err}")


# name -> (extra client settings, one produce call given produce, topic, value, key)
CLIENT_PARTS: dict[str, tuple[dict[str, Any], Any]] = {
    "client_no_header_us": ({}, lambda pr, t, v, k: pr(t, v, k)),
    "client_header_str_kw_us": ({}, lambda pr, t, v, k: pr(t, v, k, headers=[("sj", _SJ)])),
    "client_header_bytes_kw_us": ({}, lambda pr, t, v, k: pr(t, v, k,
                                                             headers=[("sj", _SJ.encode())])),
    "client_header_dict_kw_us": ({}, lambda pr, t, v, k: pr(t, v, k, headers={"sj": _SJ})),
    "client_header_str_positional_us": (
        {}, lambda pr, t, v, k: pr(t, v, k, -1, None, None, 0, [("sj", _SJ)])),
    "client_header_short_positional_us": (
        {}, lambda pr, t, v, k: pr(t, v, k, -1, None, None, 0, [("sj", "x;y")])),
    "client_header_positional_all_reports_us": (
        {"on_delivery": _report}, lambda pr, t, v, k: pr(t, v, k, -1, None, None, 0,
                                                        [("sj", _SJ)])),
    "client_header_positional_error_reports_us": (
        {"on_delivery": _report, "delivery.report.only.error": True},
        lambda pr, t, v, k: pr(t, v, k, -1, None, None, 0, [("sj", _SJ)])),
}


def client_parts(config: KafkaConfig, topic: str, values: list[bytes], keys: list[bytes],
                 rounds: int) -> dict[str, float]:
    """Process CPU per record (µs, median of ``rounds``, loops interleaved) of raw produce loops
    that differ in one thing each (CLIENT_PARTS): CPU, not wall time, so a busy box blurs the
    differences less."""
    got: dict[str, list[float]] = {name: [] for name in CLIENT_PARTS}
    for _ in range(rounds):
        for name, (extra, call) in CLIENT_PARTS.items():
            p = KafkaProducer({**config.client_settings(), **PRODUCER_SETTINGS,
                               "linger.ms": LINGER_MS, **extra})
            p.list_topics(timeout=10)
            produce = p.produce
            cpu = time.process_time()
            for value, key in zip(values, keys, strict=True):
                while True:
                    try:
                        call(produce, topic, value, key)
                        break
                    except BufferError:
                        p.poll(0.05)
            if p.flush(60):
                raise SystemExit("client parts: records left after flush")
            got[name].append((time.process_time() - cpu) / len(values) * 1e6)
    return {name: round(statistics.median(v), 3) for name, v in got.items()}


def emit_run(config: KafkaConfig, catalogue: Catalogue, data: list[dict[str, Any]],
             many: bool = False) -> float:
    with Producer(catalogue, config, linger_ms=LINGER_MS) as p:
        p.emit(JOB, data[0])  # not timed: the topic's size limit is read once
        p.flush(60)
        emit = p.emit
        start = time.perf_counter()
        if many:
            for i in range(0, len(data), 1000):
                p.emit_many([(JOB, d) for d in data[i:i + 1000]])
        else:
            for payload in data:
                emit(JOB, payload)
        p.flush(60)
        return len(data) / (time.perf_counter() - start)


class _NoClient:
    """Stands in for the Kafka client to time emit's own work."""

    def produce(self, *args: Any, **kwargs: Any) -> None:
        pass


def best_us(fn: Any) -> float:
    timer = timeit.Timer(fn)
    number, _ = timer.autorange()
    return round(min(timer.repeat(5, number)) / number * 1e6, 3)


def emit_breakdown(config: KafkaConfig, catalogue: Catalogue,
                   payload: dict[str, Any]) -> dict[str, float]:
    """emit's Python work per record, client stubbed (the topic's size limit is cached)."""
    with Producer(catalogue, config, linger_ms=LINGER_MS) as p:
        p.emit(JOB, payload)
        p.flush(30)
        client, p._kafka = p._kafka, _NoClient()  # type: ignore[assignment]
        try:
            emit_us = best_us(lambda: p.emit(JOB, payload))
        finally:
            p._kafka = client
        encode_us = best_us(lambda: p.codec.encode(JOB, payload))
        id_us = best_us(lambda: new_job_id(1795820000000))
    return {"emit_stubbed_us": emit_us, "emit_encode_us": encode_us, "emit_job_id_us": id_us,
            "emit_rest_us": round(emit_us - encode_us - id_us, 3)}


def codec_micro(catalogue: Catalogue, payload: dict[str, Any]) -> dict[str, float]:
    parsed = catalogue.current("demo.WelcomeEmail").parsed
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, parsed, payload)
    body = buf.getvalue()
    js = orjson.dumps(payload)

    def enc() -> bytes:
        out = io.BytesIO()
        fastavro.schemaless_writer(out, parsed, payload)
        return out.getvalue()

    def dec() -> Any:
        return fastavro.schemaless_reader(io.BytesIO(body), parsed, None)

    codec = Codec(catalogue)
    value = codec.encode(JOB, payload)
    tests = {"fastavro_encode_us": enc, "fastavro_decode_us": dec,
             "orjson_dumps_us": lambda: orjson.dumps(payload),
             "orjson_loads_us": lambda: orjson.loads(js),
             "codec_encode_us": lambda: codec.encode(JOB, payload),
             "codec_decode_us": lambda: codec.decode(value)}
    out = {}
    for name, fn in tests.items():
        timer = timeit.Timer(fn)
        number, _ = timer.autorange()
        out[name] = round(min(timer.repeat(3, number)) / number * 1e6, 3)
    out["avro_bytes"] = len(body)
    out["json_bytes"] = len(js)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=200_000, help="records per run [200000]")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of every loop [3]")
    ap.add_argument("--bootstrap-servers", default=None)
    args = ap.parse_args()
    config = KafkaConfig.from_env(bootstrap_servers=args.bootstrap_servers)
    topic = f"bench.produce.{uuid.uuid4().hex[:8]}"
    admin = AdminClient(config.client_settings())
    admin.create_topics([NewTopic(topic, 6, 1)])[topic].result(timeout=30)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            catalogue = catalogue_for(topic, Path(tmp))
            codec = Codec(catalogue)
            data = payloads(args.n)
            values = [codec.encode(JOB, d) for d in data]
            parsed = catalogue.current("demo.WelcomeEmail").parsed
            prefix = codec.header(JOB)
            keys = [d["user_id"].encode() for d in data]
            # The job header emit writes, built once (a lower bound of its cost).
            hdrs: list[tuple[str, str | bytes | None]] = [
                (h.META, h.compact(new_job_id(), JOB).encode())]
            # Not measured: the first records on a just-created topic wait for its leaders'
            # metadata (one CI run's only raw round came out at 90k/s against 300k+ after).
            raw_run(config, topic, values[:10_000], keys[:10_000])
            raw_rates, enc_rates, hdr_rates, emit_rates, many_rates = [], [], [], [], []
            loads = []
            for r in range(args.rounds):
                loads.append(round(os.getloadavg()[0], 2))
                raw_rates.append(raw_run(config, topic, values, keys))
                enc_rates.append(raw_encode_run(config, topic, parsed, prefix, data))
                emit_rates.append(emit_run(config, catalogue, data))
                many_rates.append(emit_run(config, catalogue, data, many=True))
                hdr_rates.append(raw_run(config, topic, values, keys, hdrs))
                print(f"round {r + 1} (load {loads[-1]}): raw {raw_rates[-1]:,.0f}/s  "
                      f"raw_encode {enc_rates[-1]:,.0f}/s  emit {emit_rates[-1]:,.0f}/s  "
                      f"emit_many {many_rates[-1]:,.0f}/s  raw+headers {hdr_rates[-1]:,.0f}/s",
                      file=sys.stderr)
            micro = codec_micro(catalogue, data[0])
            breakdown = emit_breakdown(config, catalogue, data[0])
            n_parts = min(len(values), 50_000)
            parts = client_parts(config, topic, values[:n_parts], keys[:n_parts], args.rounds)
    finally:
        admin.delete_topics([topic])[topic].result(timeout=30)
    raw, raw_h, emit = max(raw_rates), max(hdr_rates), max(emit_rates)
    many, raw_enc = max(many_rates), max(enc_rates)
    result = {"n": args.n, "rounds": args.rounds, "partitions": 6, "linger_ms": LINGER_MS,
              "load_avg": loads,
              "raw_per_s": round(raw), "raw_headers_per_s": round(raw_h),
              "raw_encode_per_s": round(raw_enc), "raw_encode_us": round(1e6 / raw_enc, 3),
              "emit_vs_raw_encode": round(statistics.median(
                  e / r for e, r in zip(emit_rates, enc_rates, strict=True)), 3),
              "emit_many_vs_raw_encode": round(statistics.median(
                  m / r for m, r in zip(many_rates, enc_rates, strict=True)), 3),
              "emit_per_s": round(emit), "R_produce": round(emit / raw, 3),
              "emit_many_per_s": round(many), "emit_many_us": round(1e6 / many, 3),
              "emit_many_vs_emit": round(statistics.median(
                  m / e for m, e in zip(many_rates, emit_rates, strict=True)), 3),
              "R_produce_vs_headers": round(emit / raw_h, 3),
              "raw_us": round(1e6 / raw, 3), "raw_headers_us": round(1e6 / raw_h, 3),
              "emit_us": round(1e6 / emit, 3), "headers_add_us": round(1e6 / raw_h - 1e6 / raw, 3),
              **breakdown, **micro, **parts}
    print(f"raw produce (pre-encoded)   {raw:>12,.0f} records/s")
    print(f"raw produce + the sj header {raw_h:>12,.0f} records/s")
    print(f"Producer.emit               {emit:>12,.0f} records/s")
    print(f"Producer.emit_many(1000)    {many:>12,.0f} records/s")
    print(f"raw produce + fastavro enc. {raw_enc:>12,.0f} records/s")
    print(f"emit / raw_encode (median)  {result['emit_vs_raw_encode']:>12.3f}   (target >= 1.0)")
    print(f"emit_many / emit (median)   {result['emit_many_vs_emit']:>12.3f}   (target >= 1.0)")
    print(f"R_produce = emit / raw      {emit / raw:>12.3f}")
    print(f"emit / raw+headers          {emit / raw_h:>12.3f}")
    print("per record, microseconds:")
    for name in ("raw_us", "raw_encode_us", "raw_headers_us", "headers_add_us", "emit_us",
                 "emit_many_us", "emit_stubbed_us", "emit_encode_us", "emit_job_id_us",
                 "emit_rest_us", *CLIENT_PARTS):
        print(f"  {name:<42} {result[name]:>8.2f}")
    for name in ("fastavro_encode_us", "orjson_dumps_us", "fastavro_decode_us",
                 "orjson_loads_us", "codec_encode_us", "codec_decode_us"):
        print(f"{name:<27} {micro[name]:>12.2f}")
    print(orjson.dumps(result).decode())


if __name__ == "__main__":
    main()
