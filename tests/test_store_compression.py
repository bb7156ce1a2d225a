"""Compression by part size in the embedded store (ingest/chdb.xml, schema's header): a part an insert
writes is LZ4 (cheap for the recorder to write), a part a merge writes is ZSTD(1) (small on disk);
a store made with the older codecs is moved over; a server is given ZSTD(1) by name. Real chDB
stores, no root."""

from __future__ import annotations

import re

import numpy as np
import pytest

from osrewind.ingest import cluster, decode, schema
from osrewind.ingest.store import Store, _codec_key
from osrewind.probes import records

RUN = "3f2a0000-0000-0000-0000-00000000c0de"


def _syscalls(first_seq: int, n: int = 50_000) -> object:
    """A batch of syscall rows as the recorder inserts them: a read/write loop's, whose arguments,
    results and durations repeat with some spread (as real ones do; random bits would not compress)."""
    rng = np.random.default_rng(first_seq)
    nr = rng.integers(0, 2, n)
    cols = {"ts": 1_000_000 + np.cumsum(rng.integers(140, 200, n)) + first_seq * 200,
            "kind": np.full(n, records.KIND_CODES["syscall"], dtype=np.int8),
            "tgid": np.full(n, 4242, dtype=np.uint32), "tid": np.full(n, 4242, dtype=np.uint32),
            "ret": np.where(rng.random(n) < 0.99, 1, -4), "a0": nr, "a1": 0x7FFD_1234_0000 + 64 * rng.integers(0, 4, n),
            "a2": np.ones(n, dtype=np.int64), "dur": rng.integers(100, 140, n), "nr": nr.astype(np.uint16)}
    return decode.without_empty_columns(decode.table(cols, RUN, first_seq))


def _parts(store: Store) -> list[tuple[str, int, int]]:
    return [(codec, int(rows), int(size)) for codec, rows, size in store.query(
        "SELECT default_compression_codec, rows, data_compressed_bytes FROM system.parts "
        "WHERE database = currentDatabase() AND table = 'events' AND active ORDER BY name")]


def test_inserted_parts_are_lz4_and_a_merged_part_zstd_with_every_row(tmp_path):
    with Store(str(tmp_path / "db")) as store:
        store.ensure_schema()
        for seq in (0, 50_000, 100_000):
            store.insert_arrow("events", _syscalls(seq))
        inserted = _parts(store)
        assert [(codec, rows) for codec, rows, _ in inserted] == [("LZ4", 50_000)] * 3
        store.client.command("OPTIMIZE TABLE events FINAL")
        merged = _parts(store)
        assert [(codec, rows) for codec, rows, _ in merged] == [("ZSTD(1)", 150_000)]
        # ZSTD's part really is the smaller one
        assert merged[0][2] < sum(size for _, _, size in inserted)
        got = store.query("SELECT count(), uniqExact(seq), min(seq), max(seq), sum(a1 % 1000) FROM events")[0]
        want = sum(int((_syscalls(s).column("a1").to_numpy() % 1000).sum()) for s in (0, 50_000, 100_000))
        assert tuple(got) == (150_000, 150_000, 0, 149_999, want)


@pytest.mark.parametrize("older", ["ZSTD(1) by name", "T64 on every number"])
def test_a_store_made_with_older_codecs_is_moved_over_keeping_its_rows(tmp_path, older):
    """Stores made before: ZSTD(1) by name throughout (as a server is given it), or T64 before every
    number's last step (the layout before the columns that compress better without it). Opened for
    writing, each column names the schema's codec (a metadata-only change: no mutation)."""
    where = str(tmp_path / "db")
    old_ddl = schema.on_server(schema.TABLES["events"]) if older == "ZSTD(1) by name" else re.sub(
        r"(\n    (?:tgid|tid|ret|a1|a3|a4|a5|nr) \w+) CODEC\([^\n]*\),", r"\1 CODEC(T64, Default),",
        schema.TABLES["events"])
    assert old_ddl != schema.TABLES["events"]
    with Store(where) as store:
        for name, ddl in schema.TABLES.items():
            store.client.command(old_ddl if name == "events" else ddl)
        store.insert_arrow("events", _syscalls(0, 1000))
    with Store(where) as store:
        store.ensure_schema()
        now = dict(store.query("SELECT name, compression_codec FROM system.columns WHERE database = "
                               "currentDatabase() AND table = 'events'"))
        for name, codec in schema.column_codecs("events").items():
            assert _codec_key(now[name]) == _codec_key(codec), (name, now[name], codec)
        assert store.query("SELECT count(), sum(a1 % 1000) FROM events")[0] == (
            1000, int((_syscalls(0, 1000).column("a1").to_numpy() % 1000).sum()))
        assert store.query("SELECT count() FROM system.mutations WHERE database = currentDatabase()")[0][0] == 0


def test_a_server_and_a_cluster_are_given_zstd_by_name():
    """A server decides ``Default`` for itself (LZ4 unless configured): every statement osrewind runs
    on one names ZSTD(1) instead, as the tables always did."""
    events = schema.TABLES["events"]
    assert "Default)" in events and "ZSTD" not in events
    served = schema.on_server(events)
    assert "Default" not in served and served.count("ZSTD(1)") == len(schema.column_codecs("events"))
    assert schema.on_server(events.replace("Default)", "ZSTD(1))")) == served
    statements = cluster.cluster_ddl(schema.TABLES, "osr", "osrewind", added=schema.ADDED_COLUMNS)
    assert not [s for s in statements if "Default)" in s]
    assert any("ZSTD(1)" in s for s in statements if "ADD COLUMN" in s)


def test_every_connection_to_an_embedded_store_uses_the_engine_configuration(tmp_path):
    """The writer's second connection (a second insert at the same time) compresses as the first."""
    with Store(str(tmp_path / "db")) as store:
        store.ensure_schema()
        other = store.insert_channel()
        assert other is not None
        try:
            other.insert_arrow("events", _syscalls(0, 1000))
        finally:
            other.close()
        assert [codec for codec, _, _ in _parts(store)] == ["LZ4"]
        store.client.command("OPTIMIZE TABLE events FINAL")
        assert [codec for codec, _, _ in _parts(store)] == ["ZSTD(1)"]
