"""Pure logic of dead letters: filters, ranges, header stripping, targets, re-validation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from streamjobs import _headers as h
from streamjobs._avro.codec import Codec
from streamjobs._ops.dlq import PROVENANCE, DeadLetter, Describer, Filter, dlq_name, revalidate
from streamjobs._ops.reprocess import republish_headers
from streamjobs._scan import Range
from streamjobs._schemas.catalogue import Catalogue


def dl(*, reason: str = "max_attempts", job_type: str | None = "send", error: str = "x.Boom",
       key: bytes | None = b"k1", at: int = 1000, partition: int = 0, offset: int = 5,
       value: bytes | None = b"", extra: h.Headers | None = None) -> DeadLetter:
    hdrs: h.Headers = [(h.ATTEMPT, b"4"), ("tenant", b"acme")]
    if job_type is not None:
        hdrs.append((h.JOB_TYPE, job_type.encode()))
    hdrs += extra or []
    hdrs += [(h.ORIG_TOPIC, b"jobs"), (h.ERROR_CLASS, error.encode()),
             (h.DLQ_REASON, reason.encode()), (h.DLQ_AT, str(at).encode())]
    return DeadLetter("jobs.dlq", partition, offset, 999, key, value, hdrs)


def test_empty_filter_matches_everything() -> None:
    assert Filter().matches(dl())
    assert Filter().matches(dl(job_type=None, key=None))


@pytest.mark.parametrize("flt,match", [
    (Filter(reasons=frozenset({"max_attempts"})), True),
    (Filter(reasons=frozenset({"permanent_error", "decode_error"})), False),
    (Filter(job_types=frozenset({"send"})), True),
    (Filter(job_types=frozenset({"other"})), False),
    (Filter(exception_classes=frozenset({"Boom"})), True),  # short name matches x.Boom
    (Filter(exception_classes=frozenset({"x.Boom"})), True),
    (Filter(exception_classes=frozenset({"oom"})), False),
    (Filter(keys=frozenset({"k1"})), True),
    (Filter(keys=frozenset({"k2"})), False),
    (Filter(since_ms=1000), True),  # since is inclusive
    (Filter(since_ms=1001), False),
    (Filter(until_ms=1000), False),  # until is exclusive
    (Filter(until_ms=1001), True),
    (Filter(partition=0, from_offset=5, to_offset=5), True),
    (Filter(partition=0, from_offset=6), False),
    (Filter(partition=1), False),
])
def test_filter_criteria(flt: Filter, match: bool) -> None:
    assert flt.matches(dl()) is match


def test_time_filter_falls_back_to_record_timestamp() -> None:
    no_at = DeadLetter("t.dlq", 0, 0, 500, None, b"", [(h.DLQ_REASON, b"max_attempts")])
    assert no_at.dlq_at == 500
    assert Filter(since_ms=400, until_ms=501).matches(no_at)


def test_filter_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="unknown reason"):
        Filter(reasons=frozenset({"oops"}))
    with pytest.raises(ValueError, match="need --partition"):
        Filter(from_offset=3)


def test_ranges_narrow_to_partition_and_offsets() -> None:
    marks = {("t", 0): (2, 10), ("t", 1): (0, 4)}
    assert Filter().ranges("t", marks) == [Range("t", 0, 2, 10), Range("t", 1, 0, 4)]
    assert Filter(partition=0, from_offset=0, to_offset=5).ranges("t", marks) == [
        Range("t", 0, 2, 6)]
    # a range past the end is empty, never negative
    [r] = Filter(partition=1, from_offset=7).ranges("t", marks)
    assert len(r) == 0


def test_dlq_name() -> None:
    assert dlq_name("demo.emails") == "demo.emails.dlq"
    assert dlq_name("demo.emails.dlq") == "demo.emails.dlq"


def test_target_topic_prefers_origin_and_maps_wait_tiers() -> None:
    assert dl().target_topic("fallback") == "jobs"
    tier = DeadLetter("j.dlq", 0, 0, 0, None, b"", [(h.ORIG_TOPIC, b"jobs.retry.30s")])
    assert tier.target_topic() == "jobs"
    bare = DeadLetter("j.dlq", 0, 0, 0, None, b"", [])
    assert bare.target_topic("from.catalogue") == "from.catalogue"
    assert bare.target_topic() is None


def test_republish_headers_strip_provenance_and_reset_attempt() -> None:
    d = dl(extra=[(h.DUE_AT, b"1"), (h.TARGET, b"jobs"), (h.REPROCESSED_FROM, b"old/0/1")])
    out = republish_headers(d)
    names = [k for k, _ in out]
    assert not PROVENANCE & set(names)
    assert ("tenant", b"acme") in out and (h.JOB_TYPE, b"send") in out
    assert [v for k, v in out if k == h.ATTEMPT] == [b"1"]
    assert [v for k, v in out if k == h.REPROCESSED_FROM] == [b"jobs.dlq/0/5"]


@pytest.fixture
def codec(tmp_path: Path) -> Codec:
    (tmp_path / "catalogue.toml").write_text(
        '[jobs.send]\nschema = "t.Send"\ntopic = "t.send"\n')
    v1 = {"type": "record", "name": "Send", "namespace": "t",
          "fields": [{"name": "to", "type": "string"}]}
    (tmp_path / "t.Send.v1.avsc").write_text(json.dumps(v1))
    return Codec(Catalogue.load(tmp_path))


def test_revalidate_reasons(codec: Codec) -> None:
    good = codec.encode("send", {"to": "a"})
    assert revalidate(codec, dl(value=good)) is None
    assert "no sj-type" in (revalidate(codec, dl(value=good, job_type=None)) or "")
    assert "not in the catalogue" in (revalidate(codec, dl(value=good, job_type="x")) or "")
    assert "bad_magic" in (revalidate(codec, dl(value=b"zz")) or "")
    assert revalidate(None, dl(value=good)) == "no catalogue loaded"


def test_describer_shows_raw_bytes_when_undecodable(codec: Codec) -> None:
    d = Describer(codec)
    ok = d.payload(codec.encode("send", {"to": "a"}))
    assert ok["payload"] == {"to": "a"} and ok["version"] == 1
    bad = d.payload(b"\xc3\x01" + b"\x00" * 8 + b"x")
    assert bad["raw_hex"].startswith("c301") and bad["problem"].startswith("unknown_schema")
    assert Describer(None).payload(b"ab")["problem"].startswith("no catalogue")
