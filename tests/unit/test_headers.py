"""The one reader of job metadata: compact ``sj`` header and the rich (legacy) headers."""

from __future__ import annotations

from streamjobs import _headers as h

ID = "0193a5b2-7c1d-7e3f-8a9b-0c1d2e3f4a5b"
RICH: h.Headers = [(h.JOB_ID, ID.encode()), (h.CREATED_AT, b"1795820000000"),
                   (h.JOB_TYPE, b"send_welcome_email"), (h.ATTEMPT, b"3"),
                   (h.SCHEMA, b"0123456789abcdef"), ("tenant", b"acme")]


def test_compact_round_trip() -> None:
    value = h.compact(ID, "send_welcome_email")
    assert value == f"{ID};send_welcome_email"  # what kcat -f '%h' shows
    hdrs: h.Headers = [(h.META, value.encode()), (h.TRACEPARENT, b"00-x")]
    assert h.scan(hdrs) == (b"send_welcome_email", ID.encode(), None, None)
    meta = h.JobMeta.from_headers(hdrs, 1795820000123)
    assert meta == h.JobMeta(ID, "send_welcome_email", 1, 1795820000123, True)


def test_legacy_five_headers_read_the_same_way() -> None:
    assert h.scan(RICH) == (b"send_welcome_email", ID.encode(), b"3", b"1795820000000")
    meta = h.JobMeta.from_headers(RICH, 42)  # sj-created-at wins over the timestamp
    assert meta == h.JobMeta(ID, "send_welcome_email", 3, 1795820000000, False)


def test_an_id_may_contain_the_separator_a_type_cannot() -> None:
    meta = h.JobMeta.from_headers([(h.META, b"order;42;charge_card")])
    assert (meta.job_id, meta.job_type) == ("order;42", "charge_card")


def test_missing_and_unreadable_metadata_is_none() -> None:
    assert h.scan(None) == (None, None, None, None)
    assert h.scan([(h.META, b"no-separator")]) == (None, b"no-separator", None, None)
    meta = h.JobMeta.from_headers([(h.META, b"\xff\xfe;t"), (h.ATTEMPT, b"x")])
    assert (meta.job_id, meta.job_type, meta.attempt, meta.created_at_ms) == \
        (None, "t", 1, None)
    assert h.JobMeta.from_headers([], 0).created_at_ms is None


def test_later_headers_win_across_forms() -> None:
    hdrs: h.Headers = [(h.META, f"{ID};a".encode()), (h.JOB_TYPE, b"b"), (h.ATTEMPT, b"2")]
    assert h.scan(hdrs) == (b"b", ID.encode(), b"2", None)
    assert h.scan([(h.JOB_TYPE, b"b"), (h.META, f"{ID};a".encode())])[0] == b"a"


def test_expand_gives_the_rich_form_in_place() -> None:
    hdrs: h.Headers = [("tenant", b"acme"), (h.META, f"{ID};send".encode()),
                       (h.TRACEPARENT, b"00-x")]
    out = h.expand(hdrs, 1795820000123)
    assert out == [("tenant", b"acme"), (h.JOB_ID, ID.encode()), (h.JOB_TYPE, b"send"),
                   (h.ATTEMPT, b"1"), (h.CREATED_AT, b"1795820000123"),
                   (h.TRACEPARENT, b"00-x")]
    assert h.JobMeta.from_headers(out) == h.JobMeta(ID, "send", 1, 1795820000123, False)
    assert h.expand(RICH, 5) == RICH  # already rich: unchanged


def test_job_ids_are_unique_uuid7s_sorting_by_millisecond() -> None:
    """Ids of one millisecond come from blocks of at most 4096 (a random prefix and a count):
    across several blocks they stay unique UUIDv7s carrying that ms, and ids of a later ms sort
    after them."""
    import uuid

    from streamjobs._status.lookup import created_ms

    ms = 1795820000000
    ids = [h.new_job_id(ms) for _ in range(5000)] + h.new_job_ids(5000, ms)
    assert len(set(ids)) == 10_000
    for job_id in ids:
        u = uuid.UUID(job_id)
        assert (u.version, u.variant, str(u)) == (7, uuid.RFC_4122, job_id)
        assert created_ms(job_id) == ms
    later = h.new_job_id(ms + 1)
    assert all(job_id < later for job_id in ids)
