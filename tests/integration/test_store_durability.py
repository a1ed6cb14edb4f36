"""The embedded store across restarts, damage, processes and threads sharing one data directory.

SQLite is the truth; Tantivy and the HNSW graphs are derived from its change log. These
tests take the derived state away (or let it fall behind) and check that reads still
answer from the truth, and that readers never see half of a write.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from ragserve.store.embedded import EmbeddedVectorStore
from ragserve.store.keyword import TantivyKeywordIndex
from ragserve.types import (
    SEARCH_MODES,
    ChunkRecord,
    DocumentWrite,
    Filters,
    Scope,
    ScoredChunk,
    SearchMode,
    StoreQuery,
)

DIM = 8
SCOPE = Scope("acme", "docs")

Vector = npt.NDArray[np.float32]
OpenStore = Callable[[], EmbeddedVectorStore]


def unit(seed: int) -> Vector:
    v = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def make_doc(doc_id: str, texts: Sequence[str], vectors: Sequence[Vector]) -> DocumentWrite:
    return DocumentWrite(
        id=doc_id,
        content_hash=hashlib.sha256(json.dumps(list(texts)).encode()).hexdigest(),
        chunks=[ChunkRecord(text=t, ordinal=i, vector=v) for i, (t, v) in enumerate(zip(texts, vectors, strict=True))],
    )


def corpus(n: int = 12) -> list[DocumentWrite]:
    """Documents "doc-<i>" of two chunks; each chunk's text names its document ("topic<i>")."""
    return [
        make_doc(f"doc-{i}", [f"topic{i} first part", f"topic{i} second part"], [unit(2 * i), unit(2 * i + 1)])
        for i in range(n)
    ]


async def search(
    store: EmbeddedVectorStore,
    mode: SearchMode,
    *,
    vector: Vector | None = None,
    text: str | None = None,
    k: int = 10,
    filters: Filters | None = None,
) -> list[ScoredChunk]:
    return await store.search(
        StoreQuery(
            scope=SCOPE,
            mode=mode,
            k=k,
            vector=vector if mode != "keyword" else None,
            text=text if mode != "dense" else None,
            filters=filters,
        )
    )


async def assert_serves(store: EmbeddedVectorStore, docs: Sequence[DocumentWrite], gone: Sequence[str] = ()) -> None:
    """Every chunk of `docs` is its own nearest neighbour and found by its document's word; `gone` is not."""
    for doc in docs:
        word = doc.chunks[0].text.split()[0]
        for chunk in doc.chunks:
            hits = await search(store, "dense", vector=chunk.vector, k=1)
            assert [(h.document_id, h.text) for h in hits] == [(doc.id, chunk.text)]
        hits = await search(store, "keyword", text=word)
        assert {(h.document_id, h.text) for h in hits} == {(doc.id, c.text) for c in doc.chunks}
    everything = await search(store, "dense", vector=unit(0), k=1000)
    assert len(everything) == sum(len(d.chunks) for d in docs)
    assert not {h.document_id for h in everything} & set(gone)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def open_store(data_dir: Path) -> Iterator[OpenStore]:
    """Opens a new store instance on the same data directory each call; closes them all at the end."""
    opened: list[EmbeddedVectorStore] = []

    def make() -> EmbeddedVectorStore:
        store = EmbeddedVectorStore(data_dir, dimension=DIM, model_name="test")
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


def snapshots(data_dir: Path) -> list[Path]:
    return sorted((data_dir / "ann").glob("c*.hnsw"))


# ------------------------------------------------------------------ restarts


async def test_reopened_store_serves_everything_from_its_snapshot(open_store: OpenStore, data_dir: Path) -> None:
    docs = corpus()
    store = open_store()
    await store.upsert(SCOPE, docs)
    await search(store, "dense", vector=unit(0))  # a serving process keeps its graph caught up
    await store.delete(SCOPE, "doc-0")
    await search(store, "dense", vector=unit(0))
    await store.aclose()
    assert snapshots(data_dir), "closing wrote no HNSW snapshot"

    reopened = open_store()
    # Only a graph loaded from the snapshot remembers the two labels deleted with doc-0;
    # one rebuilt from SQLite never held them.
    assert [g.deleted for g in reopened._graphs.values()] == [2]
    await assert_serves(reopened, docs[1:], gone=["doc-0"])


async def test_snapshot_replays_changes_written_after_it(open_store: OpenStore) -> None:
    docs = corpus()
    store = open_store()
    await store.upsert(SCOPE, docs[:8])
    await search(store, "dense", vector=unit(0))
    await store.aclose()

    # A second process writes without ever searching, so it leaves the old snapshot behind.
    writer = open_store()
    await writer.upsert(SCOPE, docs[8:])
    replaced = make_doc("doc-1", ["topic1 rewritten"], [unit(99)])
    await writer.upsert(SCOPE, [replaced])
    await writer.delete(SCOPE, "doc-2")
    await writer.aclose()

    expected = [replaced if d.id == "doc-1" else d for d in docs if d.id != "doc-2"]
    await assert_serves(open_store(), expected, gone=["doc-2"])


@pytest.mark.parametrize("damage", ["garbage", "truncated", "missing"])
async def test_damaged_snapshot_is_rebuilt_from_sqlite(open_store: OpenStore, data_dir: Path, damage: str) -> None:
    docs = corpus()
    store = open_store()
    await store.upsert(SCOPE, docs)
    await search(store, "dense", vector=unit(0))
    await store.aclose()
    [snapshot] = snapshots(data_dir)
    if damage == "garbage":
        snapshot.write_bytes(b"not an hnsw graph\x00\xff" * 500)
    elif damage == "truncated":
        snapshot.write_bytes(snapshot.read_bytes()[: snapshot.stat().st_size // 2])
    else:
        snapshot.unlink()

    await assert_serves(open_store(), docs)


async def test_deleted_keyword_index_is_rebuilt_from_the_change_log(open_store: OpenStore, data_dir: Path) -> None:
    docs = corpus()
    store = open_store()
    await store.upsert(SCOPE, docs)
    replaced = make_doc("doc-1", ["topic1 rewritten"], [unit(99)])
    await store.upsert(SCOPE, [replaced])
    await store.delete(SCOPE, "doc-2")
    await store.aclose()
    shutil.rmtree(data_dir / "tantivy")

    reopened = open_store()
    assert {h.text for h in await search(reopened, "keyword", text="topic1")} == {"topic1 rewritten"}
    assert await search(reopened, "keyword", text="topic2") == []
    expected = [replaced if d.id == "doc-1" else d for d in docs if d.id != "doc-2"]
    await assert_serves(reopened, expected, gone=["doc-2"])


async def test_reads_finish_a_write_that_died_before_tantivy(
    open_store: OpenStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = open_store()
    await writer.upsert(SCOPE, [make_doc("a", ["walrus colony"], [unit(1)])])
    reader = open_store()
    assert len(await search(reader, "keyword", text="walrus")) == 1

    real_apply = TantivyKeywordIndex.apply
    failures: list[int] = []

    def apply_dies_once(self: TantivyKeywordIndex, *args: object, **kwargs: object) -> None:
        if not failures:
            failures.append(1)
            raise RuntimeError("writer died between its SQLite and its Tantivy commit")
        real_apply(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(TantivyKeywordIndex, "apply", apply_dies_once)
    with pytest.raises(RuntimeError, match="writer died"):
        await writer.upsert(
            SCOPE, [make_doc("a", ["narwhal pod"], [unit(2)]), make_doc("b", ["narwhal tusk"], [unit(3)])]
        )
    assert failures == [1]

    # SQLite committed; Tantivy did not. The next read in any instance catches Tantivy up.
    for store in (reader, writer):
        hits = await search(store, "keyword", text="narwhal")
        assert {(h.document_id, h.text) for h in hits} == {("a", "narwhal pod"), ("b", "narwhal tusk")}
        assert await search(store, "keyword", text="walrus") == []
    fresh = open_store()
    assert {h.document_id for h in await search(fresh, "hybrid", vector=unit(2), text="narwhal")} == {"a", "b"}


# ------------------------------------------------------------------ processes

WRITER_SCRIPT = """
import asyncio, hashlib, json, sys
from pathlib import Path
import numpy as np
from ragserve.store.embedded import EmbeddedVectorStore
from ragserve.types import ChunkRecord, DocumentWrite, Scope

data_dir, dimension, scope = Path(sys.argv[1]), int(sys.argv[2]), Scope(*json.loads(sys.argv[3]))
docs = json.loads(sys.argv[4])

async def main():
    store = EmbeddedVectorStore(data_dir, dimension=dimension, model_name="test")
    print("ready", flush=True)
    sys.stdin.readline()  # wait for "go", so that concurrent writers really overlap
    for doc in docs:  # one call per document, as separate requests would be
        chunks = [ChunkRecord(text=t, ordinal=i, vector=np.asarray(v, dtype=np.float32))
                  for i, (t, v) in enumerate(zip(doc["texts"], doc["vectors"]))]
        digest = hashlib.sha256(json.dumps(doc["texts"]).encode()).hexdigest()
        await store.upsert(scope, [DocumentWrite(id=doc["id"], content_hash=digest, chunks=chunks)])
    await store.aclose()

asyncio.run(main())
"""


def start_writer(data_dir: Path, docs: Sequence[DocumentWrite]) -> subprocess.Popen[str]:
    payload = [
        {"id": d.id, "texts": [c.text for c in d.chunks], "vectors": [c.vector.tolist() for c in d.chunks]}
        for d in docs
    ]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            WRITER_SCRIPT,
            str(data_dir),
            str(DIM),
            json.dumps([SCOPE.tenant, SCOPE.collection]),
            json.dumps(payload),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready", proc.stderr.read() if proc.stderr else ""
    return proc


def run_writers(data_dir: Path, *batches: Sequence[DocumentWrite]) -> None:
    """Run one writer process per batch, all released at once, and wait for every one to succeed."""
    procs = [start_writer(data_dir, batch) for batch in batches]
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err


async def test_remembered_liveness_ends_with_another_instances_write(open_store: OpenStore) -> None:
    """A cache hit's liveness check is remembered per change; a write by anyone ends it."""
    reader, writer = open_store(), open_store()
    await writer.upsert(
        SCOPE, [make_doc("light", ["lighthouse keeper"], [unit(1)]), make_doc("pilot", ["pilot"], [unit(2)])]
    )
    ids = [h.chunk_id for h in await search(reader, "keyword", text="lighthouse pilot")]
    assert len(ids) == 2
    for _ in range(3):  # asked again with nothing written: answered from what it remembers
        assert await reader.live_chunks(SCOPE, ids) == set(ids)
    await writer.upsert(SCOPE, [make_doc("light", ["lighthouse automated"], [unit(3)])])
    pilot = {h.chunk_id for h in await search(writer, "keyword", text="pilot")}
    assert await reader.live_chunks(SCOPE, ids) == pilot
    await writer.delete(SCOPE, "pilot")
    assert await reader.live_chunks(SCOPE, ids) == set()
    assert reader.live_chunks_sync(SCOPE, ids) == set()


@pytest.mark.slow
async def test_another_process_sees_writes_on_its_next_search(open_store: OpenStore, data_dir: Path) -> None:
    reader = open_store()
    assert await search(reader, "hybrid", vector=unit(0), text="lighthouse") == []

    keeper = make_doc("light", ["lighthouse keeper on duty"], [unit(10)])
    pilot = make_doc("pilot", ["harbour pilot boards ships"], [unit(11)])
    await asyncio.to_thread(run_writers, data_dir, [keeper, pilot])
    assert [h.document_id for h in await search(reader, "dense", vector=unit(10), k=1)] == ["light"]
    assert [h.document_id for h in await search(reader, "keyword", text="keeper")] == ["light"]
    assert {h.document_id for h in await search(reader, "hybrid", vector=unit(11), text="pilot")} >= {"pilot"}

    automated = make_doc("light", ["lighthouse automated since 1990"], [unit(12)])
    await asyncio.to_thread(run_writers, data_dir, [automated])
    assert await search(reader, "keyword", text="keeper") == []
    for mode in SEARCH_MODES:
        hits = await search(reader, mode, vector=unit(10), text="lighthouse keeper")
        assert {h.text for h in hits if h.document_id == "light"} == {"lighthouse automated since 1990"}, mode
    assert [h.text for h in await search(reader, "dense", vector=unit(12), k=1)] == ["lighthouse automated since 1990"]
    info = await reader.get_document(SCOPE, "light")
    assert info is not None and info.version == 2


@pytest.mark.slow
async def test_concurrent_writer_processes_keep_every_document_whole(open_store: OpenStore, data_dir: Path) -> None:
    reader = open_store()  # opened before either writer, kept up to date by its reads

    def versions(proc: int, version: int) -> list[DocumentWrite]:
        return [
            make_doc(
                f"p{proc}-{i:02d}",
                [f"doc{proc}n{i:02d} v{version} part {j}" for j in range(3)],
                [unit(1000 * proc + 10 * i + j + version) for j in range(3)],
            )
            for i in range(20)
        ]

    # Each process writes its 20 documents one by one, then replaces its first five.
    batches = [versions(p, 1) + versions(p, 2)[:5] for p in (0, 1)]
    expected = {d.id: d for batch in batches for d in batch}
    await asyncio.to_thread(run_writers, data_dir, *batches)

    for store in (reader, open_store()):
        docs, total = await store.list_documents(SCOPE, limit=100)
        assert total == 40
        assert [d.id for d in docs] == sorted(expected)
        assert [(d.version, d.chunk_count) for d in docs] == [(2 if int(d.id[-2:]) < 5 else 1, 3) for d in docs]
        assert (await store.stats(SCOPE)).chunks == 120
        for doc in expected.values():
            want = {c.text for c in doc.chunks}
            keyword = await search(store, "keyword", text=doc.chunks[0].text.split()[0])
            assert {h.text for h in keyword} == want and {h.document_id for h in keyword} == {doc.id}
            dense = await search(store, "dense", vector=doc.chunks[0].vector, filters={"document_id": doc.id})
            assert sorted(h.text for h in dense) == sorted(want)


# ------------------------------------------------------------------ threads


@pytest.mark.slow
async def test_readers_never_see_half_of_a_replaced_document(
    open_store: OpenStore, caplog: pytest.LogCaptureFixture
) -> None:
    store = open_store()

    def version(word: str) -> DocumentWrite:
        return make_doc("d", [f"{word} common chunk {j}" for j in range(3)], [unit(j) for j in range(3)])

    fillers = [make_doc(f"f{i}", [f"filler text {i}"], [unit(100 + i)]) for i in range(10)]
    await store.upsert(SCOPE, [version("alpha"), *fillers])

    stop = threading.Event()
    writes: list[str] = []
    errors: list[BaseException] = []

    def replace_forever() -> None:
        try:
            while not stop.is_set():
                word = "beta" if len(writes) % 2 == 0 else "alpha"
                store.upsert_sync(SCOPE, [version(word)])
                writes.append(word)
        except BaseException as exc:
            errors.append(exc)

    seen: set[str] = set()
    writer = threading.Thread(target=replace_forever)
    caplog.set_level(logging.WARNING, logger="ragserve.store")
    writer.start()
    try:
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            # Concurrent reads in every mode, as a server answers several queries at once.
            results = await asyncio.gather(
                *(search(store, mode, vector=unit(0), text="common", k=20) for mode in SEARCH_MODES for _ in range(2))
            )
            for hits in results:
                words = [h.text.split()[0] for h in hits if h.document_id == "d"]
                assert len(words) == 3 and len(set(words)) == 1, words
                seen.add(words[0])
    finally:
        stop.set()
        await asyncio.to_thread(writer.join)
    assert not errors, errors
    assert len(writes) >= 5 and seen == {"alpha", "beta"}, (len(writes), seen)
    assert not [r.getMessage() for r in caplog.records if "rebuilding" in r.getMessage()]
