"""A small corpus, deterministic vectors and queries shared by the store congruence and migration tests.

The vectors are a hashed bag of our own terms (plus a little seeded noise so no two chunks
tie): texts that share words point the same way, so dense results mean something, and the
tests need no embedding model.
"""

from __future__ import annotations

import hashlib

import numpy as np
import numpy.typing as npt

from ragserve.llm.text import terms
from ragserve.store.qdrant.sparse import term_index
from ragserve.types import ChunkRecord, DocumentWrite

DIM = 64

CORPUS: dict[str, list[str]] = {
    "bread": ["Sourdough bread rises slowly with a wild yeast starter.", "Bake the loaf in a hot oven with steam."],
    "pasta": ["Fresh pasta needs flour, eggs and a rolling pin.", "Boil the noodles in salted water."],
    "coffee": ["Espresso is brewed by forcing hot water through fine coffee grounds."],
    "tea": ["Green tea leaves are steamed or pan fired to stop oxidation."],
    "wine": ["Red wine ferments with the grape skins, which give it colour and tannin."],
    "cheese": ["Cheese is made by curdling milk with rennet and ageing the curds."],
    "python": ["Python is a programming language with dynamic typing and garbage collection."],
    "rust": ["Rust guarantees memory safety without a garbage collector through ownership."],
    "sql": ["SQL queries join tables and filter rows with a WHERE clause.", "Indexes make database queries fast."],
    "git": ["Git stores snapshots of a repository and lets developers branch and merge."],
    "docker": ["Docker containers package an application with its dependencies."],
    "kubernetes": ["Kubernetes schedules containers onto a cluster of nodes and restarts failed pods."],
    "mars": ["Mars is a cold desert planet with the largest volcano in the solar system."],
    "jupiter": ["Jupiter is the largest planet, a gas giant with a great red storm."],
    "moon": ["The Moon orbits the Earth and causes the ocean tides."],
    "comet": ["A comet is a ball of ice and dust that grows a tail near the Sun."],
    "telescope": ["A telescope gathers light with lenses or mirrors to observe distant planets."],
    "rocket": ["Rockets burn fuel and oxidizer to launch satellites into orbit."],
    "football": ["Football teams score goals by kicking the ball into the net."],
    "tennis": ["Tennis players hit the ball over the net with a racket."],
    "chess": ["Chess players move pieces on a board to checkmate the opposing king."],
    "marathon": ["A marathon runner trains for months to run forty two kilometres."],
    "swimming": ["Swimmers race in a pool using freestyle, backstroke or butterfly strokes."],
    "cycling": ["Cyclists ride bicycles in long road races through the mountains."],
    "volcano": ["A volcano erupts when molten rock and gas escape from the crust."],
    "earthquake": ["Earthquakes happen when tectonic plates slip along a fault."],
    "glacier": ["Glaciers are rivers of ice that carve valleys as they move slowly."],
    "rainforest": ["Rainforests hold most of the planet's species under a dense canopy."],
    "desert": ["Deserts receive little rain, and their sand dunes shift with the wind."],
    "ocean": ["The ocean covers most of the Earth and its currents move heat around the globe."],
    "piano": ["The piano makes sound when hammers strike strings inside the case."],
    "guitar": ["A guitar has six strings that players pluck or strum."],
    "violin": ["The violin is played with a bow drawn across four strings."],
    "drums": ["Drummers keep the rhythm of a band by striking drums and cymbals."],
}

QUERIES = [
    "how is bread baked in an oven",
    "brewing coffee with hot water",
    "programming language garbage collection",
    "database tables and queries",
    "containers on a cluster",
    "largest planet in the solar system",
    "ice and glaciers moving slowly",
    "players hit the ball over the net",
    "instruments with strings",
    "running a long race",
    "ocean tides and the moon",
    "volcano eruption molten rock",
]


def embed(text: str) -> npt.NDArray[np.float32]:
    v = np.zeros(DIM, dtype=np.float32)
    for term in terms(text):
        v[term_index(term) % DIM] += 1.0
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
    v += 0.05 * np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def corpus_writes(corpus: dict[str, list[str]] = CORPUS) -> list[DocumentWrite]:
    return [
        DocumentWrite(
            id=doc_id,
            content_hash=hashlib.sha256("\n".join(texts).encode()).hexdigest(),
            chunks=[ChunkRecord(text=t, ordinal=i, vector=embed(t)) for i, t in enumerate(texts)],
            title=doc_id.title(),
            source=f"{doc_id}.txt",
            metadata={"topic": doc_id, "long": len(texts) > 1},
        )
        for doc_id, texts in corpus.items()
    ]
