"""The VectorStore contract: what every implementation must do, as plain async checks.

Each check takes an *empty* store of dimension `DIM` and fails with AssertionError when
the store breaks the protocol in `ragserve.store.base`. The checks use the protocol only,
never an implementation's internals, so the embedded store and a server-backed one run
the very same functions: `test_store_contract.py` feeds every function in `CONTRACT` a
fresh store from a fixture parametrized by backend; a new backend adds one param there.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable, Sequence

import numpy as np
import numpy.typing as npt

from ragserve.errors import InvalidInputError
from ragserve.store.base import VectorStore
from ragserve.types import (
    SEARCH_MODES,
    ChunkRecord,
    CollectionStats,
    DocumentState,
    DocumentWrite,
    Filters,
    FusionParams,
    Metadata,
    Scope,
    ScoredChunk,
    SearchMode,
    StoreQuery,
    WriteResult,
)

DIM = 8
DOCS = Scope("acme", "docs")
NOTES = Scope("acme", "notes")
OTHER_TENANT_DOCS = Scope("globex", "docs")

Vector = npt.NDArray[np.float32]
Check = Callable[[VectorStore], Awaitable[None]]


# ------------------------------------------------------------------ builders


def vec(*components: float) -> Vector:
    """A unit vector from its leading components: vec(1, 0.3) is e0 + 0.3·e1, normalized."""
    v = np.zeros(DIM, dtype=np.float32)
    v[: len(components)] = components
    return v / np.linalg.norm(v)


def axis(i: int) -> Vector:
    return vec(*([0.0] * i), 1.0)


def seeded(text: str) -> Vector:
    """A unit vector that depends only on `text`, for chunks whose direction does not matter."""
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
    v = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def make_doc(
    doc_id: str,
    *texts: str,
    vectors: Sequence[Vector] | None = None,
    title: str | None = None,
    source: str | None = None,
    metadata: Metadata | None = None,
    headings: tuple[str, ...] = (),
    page: int | None = None,
) -> DocumentWrite:
    vectors = vectors if vectors is not None else [seeded(t) for t in texts]
    assert len(vectors) == len(texts), "one vector per chunk"
    metadata = metadata or {}
    identity = json.dumps([texts, title, source, metadata], sort_keys=True)
    return DocumentWrite(
        id=doc_id,
        content_hash=hashlib.sha256(identity.encode()).hexdigest(),
        chunks=[
            ChunkRecord(text=t, ordinal=i, vector=v, headings=headings, page=page)
            for i, (t, v) in enumerate(zip(texts, vectors, strict=True))
        ],
        title=title,
        source=source,
        metadata=metadata,
    )


async def search(
    store: VectorStore,
    scope: Scope,
    mode: SearchMode,
    *,
    vector: Vector | None = None,
    text: str | None = None,
    k: int = 50,
    filters: Filters | None = None,
    fusion: FusionParams | None = None,
    mmr_lambda: float | None = None,
) -> list[ScoredChunk]:
    """Ask the store; a leg the mode does not use gets no input, as the retriever does."""
    return await store.search(
        StoreQuery(
            scope=scope,
            mode=mode,
            k=k,
            vector=vector if mode != "keyword" else None,
            text=text if mode != "dense" else None,
            filters=filters,
            fusion=fusion or FusionParams(),
            mmr_lambda=mmr_lambda,
        )
    )


def doc_ids(hits: Sequence[ScoredChunk]) -> set[str]:
    return {h.document_id for h in hits}


def texts_of(hits: Sequence[ScoredChunk], doc_id: str) -> set[str]:
    return {h.text for h in hits if h.document_id == doc_id}


# ------------------------------------------------------------------ writes


async def upsert_reports_created_updated_unchanged(store: VectorStore) -> None:
    first = make_doc("a", "first chunk", "second chunk")
    assert await store.upsert(DOCS, [first]) == [WriteResult("a", "created", 1, 2)]
    assert await store.upsert(DOCS, [first]) == [WriteResult("a", "unchanged", 1, 2)]

    second = make_doc("a", "the only chunk now")
    results = await store.upsert(DOCS, [second, make_doc("b", "another document")])
    assert results == [WriteResult("a", "updated", 2, 1), WriteResult("b", "created", 1, 1)]

    # Unchanged documents keep their version; changed ones count on from the last.
    results = await store.upsert(DOCS, [second, make_doc("a", "third version", "of a")])
    assert [r.status for r in results] == ["unchanged", "updated"]
    assert results[1].version == 3
    info = await store.get_document(DOCS, "a")
    assert info is not None and info.version == 3


async def upsert_is_all_or_nothing(store: VectorStore) -> None:
    good = make_doc("good", "a fine chunk")
    bad = make_doc("bad", "a chunk with the wrong width", vectors=[np.ones(DIM + 1, dtype=np.float32)])
    try:
        await store.upsert(DOCS, [good, bad])
    except InvalidInputError:
        pass
    else:
        raise AssertionError("a vector of the wrong dimension was accepted")
    assert await store.get_document(DOCS, "good") is None
    assert await store.stats(DOCS) == CollectionStats(0, 0)
    assert await search(store, DOCS, "keyword", text="fine") == []


async def document_states_report_hash_version_and_chunks(store: VectorStore) -> None:
    a1, b = make_doc("a", "one", "two"), make_doc("b", "three")
    await store.upsert(DOCS, [a1, b])
    a2 = make_doc("a", "one changed")
    await store.upsert(DOCS, [a2])

    states = await store.document_states(DOCS, ["a", "b", "missing", "a"])
    assert states == {
        "a": DocumentState(a2.content_hash, 2, 1),
        "b": DocumentState(b.content_hash, 1, 1),
    }
    assert await store.document_states(DOCS, []) == {}
    assert await store.document_states(NOTES, ["a"]) == {}
    assert await store.document_states(OTHER_TENANT_DOCS, ["a"]) == {}


async def reupsert_replaces_every_old_chunk(store: VectorStore) -> None:
    old = make_doc(
        "a",
        "zebra stripes in the north",
        "zebra stripes in the south",
        "zebra stripes at dusk",
        vectors=[axis(0), vec(1, 0.1), vec(1, 0, 0.1)],
    )
    other = make_doc("b", "giraffes eat leaves", vectors=[axis(5)])
    await store.upsert(DOCS, [old, other])
    new = make_doc("a", "penguin colony one", "penguin colony two", vectors=[axis(3), vec(0, 0, 0, 1, 0.1)])
    await store.upsert(DOCS, [new])

    new_texts = {c.text for c in new.chunks}
    assert await search(store, DOCS, "keyword", text="zebra stripes") == []
    assert texts_of(await search(store, DOCS, "keyword", text="penguin"), "a") == new_texts
    for mode in SEARCH_MODES:
        hits = await search(store, DOCS, mode, vector=axis(0), text="zebra penguin giraffes")
        assert not any("zebra" in h.text for h in hits), mode
        assert texts_of(hits, "a") == new_texts, mode
    dense = await search(store, DOCS, "dense", vector=axis(0))
    assert len(dense) == 3
    assert len({h.chunk_id for h in dense}) == 3

    assert await store.stats(DOCS) == CollectionStats(documents=2, chunks=3)
    info = await store.get_document(DOCS, "a")
    assert info is not None
    assert (info.version, info.chunk_count, info.content_hash) == (2, 2, new.content_hash)


async def delete_removes_the_document_and_every_chunk(store: VectorStore) -> None:
    gone = make_doc("a", "walrus on ice", "walrus in water", "walrus asleep", vectors=[axis(0)] * 3)
    kept = make_doc("b", "seal on a rock", vectors=[axis(1)])
    await store.upsert(DOCS, [gone, kept])

    assert await store.delete(DOCS, "a") is True
    assert await store.get_document(DOCS, "a") is None
    assert await store.document_states(DOCS, ["a"]) == {}
    assert await store.stats(DOCS) == CollectionStats(1, 1)
    docs, total = await store.list_documents(DOCS)
    assert ([d.id for d in docs], total) == (["b"], 1)
    assert await search(store, DOCS, "keyword", text="walrus") == []
    for mode in SEARCH_MODES:
        hits = await search(store, DOCS, mode, vector=axis(0), text="walrus seal")
        assert doc_ids(hits) == {"b"}, mode

    assert await store.delete(DOCS, "a") is False
    assert await store.delete(DOCS, "never-written") is False
    assert await store.delete(Scope("acme", "nowhere"), "b") is False
    assert await store.get_document(DOCS, "b") is not None


# ------------------------------------------------------------------ lookups


async def list_documents_pages_ordered_by_id(store: VectorStore) -> None:
    await store.upsert(DOCS, [make_doc(i, f"text of {i}") for i in ["d03", "d01", "d05"]])
    await store.upsert(DOCS, [make_doc(i, f"text of {i}") for i in ["d02", "d04"]])

    async def page(limit: int, offset: int) -> tuple[list[str], int]:
        docs, total = await store.list_documents(DOCS, limit=limit, offset=offset)
        return [d.id for d in docs], total

    assert await page(2, 0) == (["d01", "d02"], 5)
    assert await page(2, 2) == (["d03", "d04"], 5)
    assert await page(2, 4) == (["d05"], 5)
    assert await page(2, 5) == ([], 5)
    assert await page(50, 0) == (["d01", "d02", "d03", "d04", "d05"], 5)
    docs, total = await store.list_documents(DOCS)
    assert ([d.id for d in docs], total) == (["d01", "d02", "d03", "d04", "d05"], 5)
    assert await store.list_documents(NOTES) == ([], 0)


async def get_document_returns_what_was_written(store: VectorStore) -> None:
    written = make_doc(
        "a", "x marks", "the spot", title="Treasure", source="map.txt", metadata={"lang": "en", "year": 2020}
    )
    await store.upsert(DOCS, [written])
    info = await store.get_document(DOCS, "a")
    assert info is not None
    assert (info.id, info.version, info.content_hash, info.chunk_count) == ("a", 1, written.content_hash, 2)
    assert (info.title, info.source, info.metadata) == ("Treasure", "map.txt", {"lang": "en", "year": 2020})
    assert info.created_at <= info.updated_at

    await store.upsert(DOCS, [make_doc("a", "moved", title="Treasure", source="map.txt", metadata={"lang": "de"})])
    updated = await store.get_document(DOCS, "a")
    assert updated is not None
    assert (updated.version, updated.chunk_count, updated.metadata) == (2, 1, {"lang": "de"})
    assert updated.created_at == info.created_at
    assert updated.updated_at >= info.updated_at
    assert await store.get_document(DOCS, "missing") is None


async def stats_count_documents_and_chunks(store: VectorStore) -> None:
    assert await store.stats(DOCS) == CollectionStats(0, 0)
    await store.upsert(DOCS, [make_doc("a", "1", "2", "3"), make_doc("b", "4", "5")])
    assert await store.stats(DOCS) == CollectionStats(2, 5)
    await store.upsert(DOCS, [make_doc("a", "just one")])
    assert await store.stats(DOCS) == CollectionStats(2, 3)
    await store.delete(DOCS, "b")
    assert await store.stats(DOCS) == CollectionStats(1, 1)
    assert await store.stats(NOTES) == CollectionStats(0, 0)


async def totals_span_every_tenant_and_collection(store: VectorStore) -> None:
    assert await store.totals() == CollectionStats(0, 0)
    await store.upsert(DOCS, [make_doc("a", "1", "2")])
    await store.upsert(NOTES, [make_doc("a", "3")])
    await store.upsert(OTHER_TENANT_DOCS, [make_doc("z", "4", "5", "6")])
    assert await store.totals() == CollectionStats(3, 6)
    await store.delete(DOCS, "a")
    assert await store.totals() == CollectionStats(2, 4)


async def live_chunks_are_the_current_versions_chunks(store: VectorStore) -> None:
    await store.upsert(DOCS, [make_doc("a", "alpha walrus", "beta walrus"), make_doc("b", "gamma walrus")])
    first = [c.chunk_id for c in await store.search(StoreQuery(DOCS, "keyword", 10, text="walrus"))]
    assert len(first) == 3
    assert await store.live_chunks(DOCS, first) == set(first)
    await store.upsert(DOCS, [make_doc("a", "alpha changed")])  # a new version: new chunk ids
    b_chunks = {c.chunk_id for c in await store.search(StoreQuery(DOCS, "keyword", 10, text="gamma"))}
    assert await store.live_chunks(DOCS, first) == b_chunks
    assert await store.live_chunks(OTHER_TENANT_DOCS, first) == set()  # never across tenants
    await store.delete(DOCS, "b")
    assert await store.live_chunks(DOCS, first) == set()
    assert await store.live_chunks(DOCS, []) == set()


async def list_collections_is_per_tenant(store: VectorStore) -> None:
    assert await store.list_collections("acme") == []
    for scope in (NOTES, DOCS, OTHER_TENANT_DOCS, Scope("globex", "archive")):
        await store.upsert(scope, [make_doc("a", f"in {scope.collection}")])
    assert sorted(await store.list_collections("acme")) == ["docs", "notes"]
    assert sorted(await store.list_collections("globex")) == ["archive", "docs"]
    assert await store.list_collections("initech") == []


# ------------------------------------------------------------------ isolation


async def _assert_isolated(store: VectorStore, mine: Scope, theirs: Scope) -> None:
    """Two scopes that both hold a document "shared" and one of their own never see each other."""
    for scope, owner in ((mine, "mine"), (theirs, "theirs")):
        await store.upsert(
            scope,
            [
                make_doc("shared", f"{owner} secret plan", vectors=[axis(0)]),
                make_doc(f"only-{owner}", f"{owner} private secret", vectors=[vec(1, 0.2)]),
            ],
        )

    for scope, owner, other in ((mine, "mine", "theirs"), (theirs, "theirs", "mine")):
        for mode in SEARCH_MODES:
            hits = await search(store, scope, mode, vector=axis(0), text="secret plan")
            assert doc_ids(hits) == {"shared", f"only-{owner}"}, (owner, mode)
            assert all(h.text.startswith(f"{owner} ") for h in hits), (owner, mode)
        docs, total = await store.list_documents(scope)
        assert ([d.id for d in docs], total) == ([f"only-{owner}", "shared"], 2)
        shared = await store.get_document(scope, "shared")
        assert shared is not None
        assert shared.content_hash == make_doc("shared", f"{owner} secret plan", vectors=[axis(0)]).content_hash
        assert await store.get_document(scope, f"only-{other}") is None
        assert await store.document_states(scope, [f"only-{other}"]) == {}

    assert await store.delete(mine, "only-theirs") is False
    assert await store.get_document(theirs, "only-theirs") is not None
    assert await store.delete(mine, "shared") is True
    assert await store.get_document(theirs, "shared") is not None
    assert await store.stats(theirs) == CollectionStats(2, 2)
    hits = await search(store, theirs, "hybrid", vector=axis(0), text="secret plan")
    assert texts_of(hits, "shared") == {"theirs secret plan"}


async def tenants_never_see_each_other(store: VectorStore) -> None:
    await _assert_isolated(store, DOCS, OTHER_TENANT_DOCS)


async def collections_never_see_each_other(store: VectorStore) -> None:
    await _assert_isolated(store, DOCS, NOTES)


# ------------------------------------------------------------------ search


async def dense_search_ranks_the_nearest_vector_first(store: VectorStore) -> None:
    await store.upsert(DOCS, [make_doc(f"e{i}", f"vector number {i}", vectors=[axis(i)]) for i in range(5)])
    hits = await search(store, DOCS, "dense", vector=vec(0, 0, 1, 0.3), k=5)
    assert [h.document_id for h in hits[:2]] == ["e2", "e3"]
    assert len(hits) == 5
    assert hits[0].dense_rank == 1 and hits[1].dense_rank == 2
    assert hits[0].keyword_rank is None
    assert hits[0].dense_score is not None and hits[1].dense_score is not None
    assert hits[0].dense_score > hits[1].dense_score
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


async def keyword_search_matches_word_stems(store: VectorStore) -> None:
    await store.upsert(
        DOCS,
        [
            make_doc("runs", "She runs every morning."),
            make_doc("run", "Run for your life!"),
            make_doc("walked", "He walked to the shop."),
        ],
    )
    hits = await search(store, DOCS, "keyword", text="running")
    assert doc_ids(hits) == {"runs", "run"}
    assert all(h.keyword_rank is not None and h.dense_rank is None for h in hits)
    assert doc_ids(await search(store, DOCS, "keyword", text="walking")) == {"walked"}
    assert await search(store, DOCS, "keyword", text="swimming") == []


async def keyword_query_syntax_is_plain_text(store: VectorStore) -> None:
    await store.upsert(DOCS, [make_doc("fb", "the foo and the bar"), make_doc("other", "nothing to see")])
    for query in ['C++ "foo" AND (bar', "bar)", '"foo', "body:foo", "foo^2 ~bar*", "-foo", "+bar [1 TO 5}", "foo\\"]:
        for mode in ("keyword", "hybrid"):
            hits = await search(store, DOCS, mode, vector=axis(0), text=query)
            assert "fb" in doc_ids(hits), (query, mode)
    assert await search(store, DOCS, "keyword", text='()"+-:*') == []


async def hybrid_fuses_both_legs(store: VectorStore) -> None:
    await store.upsert(
        DOCS,
        [
            make_doc("both", "quantum entanglement explained", vectors=[vec(1, 0.3)]),
            make_doc("dense-only", "a note on gardening", vectors=[axis(0)]),
            make_doc("keyword-only", "quantum quantum", vectors=[axis(7)]),
            *(make_doc(f"filler-{i}", f"cooking tip {i}", vectors=[vec(1, *[0] * (i + 1), 1)]) for i in range(5)),
        ],
    )
    # Three candidates per leg: the dense leg sees dense-only, both, a filler; keyword sees the two quantum docs.
    fusion = FusionParams(candidates=3)
    dense = await search(store, DOCS, "dense", vector=axis(0), k=3, fusion=fusion)
    keyword = await search(store, DOCS, "keyword", text="quantum", k=3, fusion=fusion)
    assert dense[0].document_id == "dense-only"
    assert keyword[0].document_id == "keyword-only"

    hits = await search(store, DOCS, "hybrid", vector=axis(0), text="quantum", k=3, fusion=fusion)
    assert hits[0].document_id == "both"
    assert (hits[0].dense_rank, hits[0].keyword_rank) == (2, 2)
    by_id = {h.document_id: h for h in hits}
    assert set(by_id) == {"both", "dense-only", "keyword-only"}
    assert (by_id["dense-only"].dense_rank, by_id["dense-only"].keyword_rank) == (1, None)
    assert (by_id["keyword-only"].dense_rank, by_id["keyword-only"].keyword_rank) == (None, 1)
    assert hits[0].score > by_id["dense-only"].score
    assert hits[0].score > by_id["keyword-only"].score


async def filters_match_metadata_in_every_mode(store: VectorStore) -> None:
    rows: list[tuple[str, str | None, Metadata]] = [
        ("en-2020", "a.txt", {"lang": "en", "year": 2020}),
        ("en-2021", "b.txt", {"lang": "en", "year": 2021}),
        ("de-2021", "c.txt", {"lang": "de", "year": 2021}),
        ("fr-2020", None, {"lang": "fr", "year": 2020}),
        ("int-5", None, {"n": 5}),
        ("str-5", None, {"n": "5"}),
    ]
    await store.upsert(
        DOCS, [make_doc(i, f"annual report {i}", f"report appendix {i}", source=s, metadata=m) for i, s, m in rows]
    )
    everything = {i for i, _, _ in rows}
    cases: list[tuple[Filters | None, set[str]]] = [
        (None, everything),
        ({"lang": "en"}, {"en-2020", "en-2021"}),
        ({"lang": ["de", "fr"]}, {"de-2021", "fr-2020"}),
        ({"lang": "en", "year": 2021}, {"en-2021"}),
        ({"lang": ["en", "de"], "year": 2021}, {"en-2021", "de-2021"}),
        ({"year": [2020]}, {"en-2020", "fr-2020"}),
        ({"document_id": "de-2021"}, {"de-2021"}),
        ({"document_id": ["int-5", "str-5", "absent"]}, {"int-5", "str-5"}),
        ({"source": "b.txt"}, {"en-2021"}),
        ({"source": ["a.txt", "c.txt"], "lang": "en"}, {"en-2020"}),
        ({"n": 5}, {"int-5"}),
        ({"n": "5"}, {"str-5"}),
        ({"lang": "es"}, set()),
        ({"lang": "en", "year": 1999}, set()),
        ({"no-such-key": "x"}, set()),
    ]
    for filters, expected in cases:
        for mode in SEARCH_MODES:
            hits = await search(store, DOCS, mode, vector=axis(0), text="report", filters=filters)
            assert doc_ids(hits) == expected, (filters, mode)
            if not expected:
                assert hits == [], (filters, mode)
            else:
                # Both chunks of every matching document, nothing else.
                assert len(hits) == 2 * len(expected), (filters, mode)


async def filters_apply_inside_the_search(store: VectorStore) -> None:
    rare = {"doc-07", "doc-31"}
    docs = []
    for i in range(50):
        doc_id = f"doc-{i:02d}"
        if doc_id in rare:
            # Far from the query and long: the last a post-filter over the top few would reach.
            docs.append(
                make_doc(
                    doc_id,
                    f"common word buried in a much longer chunk of unrelated prose number {i}",
                    vectors=[vec(0.05, 0, 0, 0, 0, 1, 0.01 * i)],
                    metadata={"group": "rare"},
                )
            )
        else:
            docs.append(make_doc(doc_id, f"common word {i}", vectors=[vec(1, 0.01 * i)], metadata={"group": "bulk"}))
    await store.upsert(DOCS, docs)
    fusion = FusionParams(candidates=2)
    rare_filters: list[Filters] = [{"group": "rare"}, {"group": ["rare", "absent"]}]
    for filters in rare_filters:
        for mode in SEARCH_MODES:
            hits = await search(
                store, DOCS, mode, vector=axis(0), text="common word", k=2, filters=filters, fusion=fusion
            )
            assert doc_ids(hits) == rare, (filters, mode)


async def mmr_returns_k_diverse_results(store: VectorStore) -> None:
    await store.upsert(
        DOCS,
        [
            make_doc("twin-a", "paris travel guide", vectors=[vec(1, 0.1)]),
            make_doc("twin-b", "paris travel guide copy", vectors=[vec(1, 0.1, 0.02)]),
            make_doc("distinct", "paris food guide with a few more words", vectors=[vec(1, 0, 0, 0.9)]),
        ],
    )
    for mode in ("dense", "hybrid"):
        plain = await search(store, DOCS, mode, vector=axis(0), text="paris guide", k=2)
        assert doc_ids(plain) == {"twin-a", "twin-b"}, mode
        diverse = await search(store, DOCS, mode, vector=axis(0), text="paris guide", k=2, mmr_lambda=0.5)
        assert len(diverse) == 2, mode
        assert "distinct" in doc_ids(diverse), mode
        assert len(doc_ids(diverse) & {"twin-a", "twin-b"}) == 1, mode


async def k_larger_than_the_collection_returns_everything(store: VectorStore) -> None:
    await store.upsert(DOCS, [make_doc("a", "shared one", "shared two"), make_doc("b", "shared three")])
    for mode in SEARCH_MODES:
        hits = await search(store, DOCS, mode, vector=axis(0), text="shared", k=1000)
        assert len(hits) == 3, mode
        assert len({h.chunk_id for h in hits}) == 3, mode


async def unknown_scopes_answer_empty(store: VectorStore) -> None:
    await store.upsert(DOCS, [make_doc("a", "something to find", vectors=[axis(0)])])
    for scope in (Scope("acme", "nowhere"), Scope("nobody", "docs")):
        for mode in SEARCH_MODES:
            assert await search(store, scope, mode, vector=axis(0), text="something") == [], (scope, mode)
        assert await store.stats(scope) == CollectionStats(0, 0)
        assert await store.get_document(scope, "a") is None


async def search_hits_carry_chunk_and_document_fields(store: VectorStore) -> None:
    written = make_doc(
        "manual",
        "install the unit",
        "configure the unit",
        title="Manual",
        source="manual.pdf",
        metadata={"lang": "en"},
        headings=("Setup", "Steps"),
        page=3,
    )
    await store.upsert(DOCS, [written])
    for mode in SEARCH_MODES:
        hits = await search(store, DOCS, mode, vector=axis(0), text="unit")
        assert {h.text for h in hits} == {"install the unit", "configure the unit"}, mode
        assert len({h.chunk_id for h in hits}) == 2, mode
        for h in hits:
            assert (h.document_id, h.title, h.source) == ("manual", "Manual", "manual.pdf")
            assert (h.headings, h.page, h.metadata) == (("Setup", "Steps"), 3, {"lang": "en"})


async def drop_collection_removes_only_that_collection(store: VectorStore) -> None:
    for scope in (DOCS, NOTES, OTHER_TENANT_DOCS):
        await store.upsert(scope, [make_doc("a", f"ostrich facts in {scope.tenant} {scope.collection}")])

    assert await store.drop_collection(DOCS) is True
    assert await store.list_collections("acme") == ["notes"]
    assert await store.stats(DOCS) == CollectionStats(0, 0)
    assert await store.get_document(DOCS, "a") is None
    assert await store.list_documents(DOCS) == ([], 0)
    assert await store.document_states(DOCS, ["a"]) == {}
    for mode in SEARCH_MODES:
        assert await search(store, DOCS, mode, vector=axis(0), text="ostrich") == [], mode
    for scope in (NOTES, OTHER_TENANT_DOCS):
        assert await store.stats(scope) == CollectionStats(1, 1)
        assert len(await search(store, scope, "keyword", text="ostrich")) == 1
    assert await store.drop_collection(DOCS) is False
    assert await store.drop_collection(Scope("acme", "nowhere")) is False

    # The name is free again, and nothing of the dropped collection comes back with it.
    assert await store.upsert(DOCS, [make_doc("a", "emu facts")]) == [WriteResult("a", "created", 1, 1)]
    assert await search(store, DOCS, "keyword", text="ostrich") == []
    for mode in SEARCH_MODES:
        hits = await search(store, DOCS, mode, vector=axis(0), text="emu ostrich")
        assert [h.text for h in hits] == ["emu facts"], mode


CONTRACT: tuple[Check, ...] = (
    upsert_reports_created_updated_unchanged,
    upsert_is_all_or_nothing,
    document_states_report_hash_version_and_chunks,
    reupsert_replaces_every_old_chunk,
    delete_removes_the_document_and_every_chunk,
    list_documents_pages_ordered_by_id,
    get_document_returns_what_was_written,
    stats_count_documents_and_chunks,
    totals_span_every_tenant_and_collection,
    live_chunks_are_the_current_versions_chunks,
    list_collections_is_per_tenant,
    tenants_never_see_each_other,
    collections_never_see_each_other,
    dense_search_ranks_the_nearest_vector_first,
    keyword_search_matches_word_stems,
    keyword_query_syntax_is_plain_text,
    hybrid_fuses_both_legs,
    filters_match_metadata_in_every_mode,
    filters_apply_inside_the_search,
    mmr_returns_k_diverse_results,
    k_larger_than_the_collection_returns_everything,
    unknown_scopes_answer_empty,
    search_hits_carry_chunk_and_document_fields,
    drop_collection_removes_only_that_collection,
)
