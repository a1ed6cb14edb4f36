"""The extractive answerer: what it quotes, how it cites, and when it declines."""

from __future__ import annotations

import re
import statistics
import time
from typing import Any

import pytest

from ragserve.errors import ConfigurationError
from ragserve.llm.base import Generation, LLMProvider, TokenDelta
from ragserve.llm.extractive import NO_ANSWER, ExtractiveAnswerer, relevance
from ragserve.llm.text import MAX_UNIT_CHARS, Idf, split_sentences, stem, terms
from ragserve.types import ChatTurn, ScoredChunk

PORT = (
    "ragserve is a retrieval-augmented generation service. The HTTP server listens on port 8000 by default. "
    "You can change the port with the RAGSERVE_PORT environment variable."
)
STORAGE = (
    "## Storage\nDocuments, chunks and vectors are stored in a SQLite database in the data directory. "
    "The keyword index is built with Tantivy and uses BM25 scoring. Dense vectors are searched with an HNSW index."
)
REFUNDS = (
    "Customers may return any item within 30 days of delivery for a full refund. Refunds are issued to the "
    "original payment method within 5 business days. Items must be unused and in their original packaging."
)
LIMITS = (
    "- Rate limits default to 600 requests per minute per API key.\n- Exceeding the limit returns HTTP 429.\n"
    "- Limits are shared across replicas when Redis is configured."
)
EMBEDDINGS = (
    "The embedder is all-MiniLM-L6-v2, which produces 384-dimensional vectors. Inputs longer than 256 tokens "
    "are truncated, so chunks are sized to fit the window."
)
EIFFEL = (
    "The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris, France. It is named after "
    "the engineer Gustave Eiffel, whose company designed and built the tower."
)
IBUPROFEN = (
    "Ibuprofen is a nonsteroidal anti-inflammatory drug used to treat pain, fever and inflammation. The usual "
    "adult dose is 200 to 400 mg every 4 to 6 hours. Dr. Smith notes that it should be taken with food."
)


def chunk(n: int, text: str, title: str | None = None) -> ScoredChunk:
    return ScoredChunk(chunk_id=n, document_id=f"doc-{n}", text=text, score=1 / (60 + n), title=title)


@pytest.fixture
def corpus() -> list[ScoredChunk]:
    return [
        chunk(1, PORT, "Running the server"),
        chunk(2, STORAGE, "Architecture"),
        chunk(3, REFUNDS, "Refund policy"),
        chunk(4, LIMITS, "Limits"),
        chunk(5, EMBEDDINGS, "Embeddings"),
        chunk(6, EIFFEL, "Eiffel Tower"),
        chunk(7, IBUPROFEN, "Ibuprofen"),
    ]


def quoted(generation: Generation, sources: list[ScoredChunk]) -> list[tuple[str, str]]:
    """(sentence, document id) for every `sentence [n]` in the answer."""
    pairs = re.findall(r"\s*(.+?) \[(\d+)\]", generation.text)
    return [(sentence, sources[int(n) - 1].document_id) for sentence, n in pairs]


async def test_quotes_the_answering_sentence_with_its_source_marker(corpus: list[ScoredChunk]) -> None:
    generation = await ExtractiveAnswerer().generate("What port does the server listen on?", corpus)

    assert generation.answered
    assert generation.text == "The HTTP server listens on port 8000 by default. [1]"
    assert generation.cited == [1]
    assert (generation.provider, generation.model) == ("extractive", "extractive-v1")


async def test_marker_numbers_index_the_sources_as_passed(corpus: list[ScoredChunk]) -> None:
    sources = [corpus[2], corpus[4], corpus[1]]

    generation = await ExtractiveAnswerer().generate("How are dense vectors searched?", sources)

    assert generation.text == "Dense vectors are searched with an HNSW index. [3]"
    assert generation.cited == [3]


async def test_cites_several_sources_with_their_numbers(corpus: list[ScoredChunk]) -> None:
    question = "What port does the server listen on, and where are documents stored?"

    generation = await ExtractiveAnswerer().generate(question, corpus)

    assert generation.answered
    assert generation.cited == [1, 2]
    assert quoted(generation, corpus) == [
        ("The HTTP server listens on port 8000 by default.", "doc-1"),
        ("Documents, chunks and vectors are stored in a SQLite database in the data directory.", "doc-2"),
    ]


async def test_several_sentences_of_one_source_are_each_marked(corpus: list[ScoredChunk]) -> None:
    generation = await ExtractiveAnswerer().generate("What happens when I exceed the rate limit?", corpus)

    assert generation.text == (
        "Rate limits default to 600 requests per minute per API key. [4] Exceeding the limit returns HTTP 429. [4]"
    )
    assert generation.cited == [4]


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("How do I change the port?", "You can change the port with the RAGSERVE_PORT environment variable."),
        ("Where are documents stored?", "Documents, chunks and vectors are stored in a SQLite database"),
        ("What scoring does the keyword index use?", "The keyword index is built with Tantivy and uses BM25"),
        ("How long do I have to return an item?", "Customers may return any item within 30 days"),
        ("How are refunds issued?", "Refunds are issued to the original payment method"),
        ("What is the refund policy?", "Customers may return any item within 30 days"),
        ("What is the default rate limit?", "Rate limits default to 600 requests per minute"),
        ("What dimension are the embedding vectors?", "which produces 384-dimensional vectors"),
        ("Is Redis required for sharing rate limits across replicas?", "Limits are shared across replicas"),
        ("What status code is returned when the limit is exceeded?", "Exceeding the limit returns HTTP 429."),
        ("Who designed the Eiffel Tower?", "whose company designed and built the tower"),
        ("What is the usual dose of ibuprofen for adults?", "The usual adult dose is 200 to 400 mg"),
        ("Should ibuprofen be taken with food?", "Dr. Smith notes that it should be taken with food."),
        ("What is ibuprofen used for?", "drug used to treat pain, fever and inflammation"),
        # Long and verbose: no one sentence covers it, two together do.
        (
            "How do I configure the HTTP server to listen on a different port using an environment variable?",
            "You can change the port with the RAGSERVE_PORT environment variable.",
        ),
        ("Tantivy", "built with Tantivy"),
    ],
)
async def test_answers_questions_its_sources_answer(corpus: list[ScoredChunk], question: str, expected: str) -> None:
    generation = await ExtractiveAnswerer().generate(question, corpus)

    assert generation.answered, question
    assert expected in generation.text


@pytest.mark.parametrize(
    "question",
    [
        "What is the capital of France?",
        "Who founded ragserve?",
        "How do I configure TLS certificates for the server?",
        "What is the price of the premium plan?",
        "Does ragserve support GPU acceleration for reranking?",
        "What database does the billing service use?",
        "Which vector dimension does OpenAI text-embedding-3-large produce?",
        "How tall is the Eiffel Tower?",
        "How many visitors does the Eiffel Tower get each year?",
        "What are the side effects of aspirin?",
        "Can children take ibuprofen?",
        "What is the boiling point of water?",
    ],
)
async def test_says_it_does_not_know_when_no_source_answers(corpus: list[ScoredChunk], question: str) -> None:
    generation = await ExtractiveAnswerer().generate(question, corpus)

    assert not generation.answered, generation.text
    assert generation.text == "I don't know: none of the retrieved sources answers this question."
    assert generation.cited == []


async def test_no_sources_or_no_informative_question_is_no_answer(corpus: list[ScoredChunk]) -> None:
    answerer = ExtractiveAnswerer()

    for question, sources in [("What port does the server listen on?", []), ("What is it?", corpus), ("", corpus)]:
        generation = await answerer.generate(question, sources)
        assert (generation.text, generation.cited, generation.answered) == (NO_ANSWER, [], False)


async def test_sources_without_text_are_no_answer() -> None:
    generation = await ExtractiveAnswerer().generate("What port?", [chunk(1, ""), chunk(2, "## Port\n\n---")])

    assert not generation.answered


async def test_same_input_gives_the_same_output(corpus: list[ScoredChunk]) -> None:
    answerer = ExtractiveAnswerer()
    question = "What port does the server listen on, and where are documents stored?"

    first = await answerer.generate(question, corpus)
    second = await ExtractiveAnswerer().generate(question, list(corpus))

    assert first == second


async def test_reordering_sources_renumbers_markers_consistently(corpus: list[ScoredChunk]) -> None:
    question = "What port does the server listen on, and where are documents stored?"
    reordered = list(reversed(corpus))

    forward = await ExtractiveAnswerer().generate(question, corpus)
    backward = await ExtractiveAnswerer().generate(question, reordered)

    assert sorted(quoted(forward, corpus)) == sorted(quoted(backward, reordered))
    assert backward.cited == [len(corpus) - 1, len(corpus)]


async def test_max_sentences_is_respected(corpus: list[ScoredChunk]) -> None:
    question = "What happens when I exceed the rate limit?"

    generation = await ExtractiveAnswerer(max_sentences=1).generate(question, corpus)

    assert generation.text.count("[") == 1


async def test_max_chars_cuts_at_sentence_boundaries(corpus: list[ScoredChunk]) -> None:
    question = "What happens when I exceed the rate limit?"

    generation = await ExtractiveAnswerer(max_chars=70).generate(question, corpus)

    assert len(generation.text) <= 70
    assert generation.text == "Rate limits default to 600 requests per minute per API key. [4]"


async def test_max_tokens_shortens_the_answer(corpus: list[ScoredChunk]) -> None:
    question = "What happens when I exceed the rate limit?"

    generation = await ExtractiveAnswerer().generate(question, corpus, max_tokens=12)

    assert len(generation.text) <= 48
    assert generation.answered


async def test_a_best_sentence_longer_than_max_chars_is_shortened_not_dropped(corpus: list[ScoredChunk]) -> None:
    generation = await ExtractiveAnswerer(max_chars=40).generate("Where are documents stored?", corpus)

    assert generation.answered
    assert len(generation.text) <= 40
    assert generation.text.startswith("Documents, chunks")
    assert generation.text.endswith("… [2]")


async def test_duplicate_sentences_are_quoted_once() -> None:
    sentence = "Refunds are issued to the original payment method within 5 business days."
    sources = [
        chunk(1, f"{sentence} Items must be unused."),
        chunk(2, f"Our returns desk is open daily. {sentence}"),
        chunk(3, "Refunds are issued to the original payment method within 5 business days of approval."),
    ]

    generation = await ExtractiveAnswerer().generate("How are refunds issued?", sources)

    assert generation.text == f"{sentence} [1]"


async def test_markdown_markers_are_not_quoted() -> None:
    text = (
        "# Deployment\n\n## Ports\n\n"
        "* The **API** listens on port `8000`.\n"
        "* The metrics endpoint listens on port 9100\n\n"
        "> See [the guide](https://example.com/guide) for TLS [3]."
    )

    generation = await ExtractiveAnswerer().generate("Which port does the API listen on?", [chunk(1, text)])

    assert generation.text.startswith("The API listens on port 8000. [1]")
    assert not re.search(r"[#*`>]|\]\(|- ", generation.text)


async def test_usage_counts_words(corpus: list[ScoredChunk]) -> None:
    generation = await ExtractiveAnswerer().generate("What port does the server listen on?", corpus[:1])

    assert generation.usage == {"prompt_tokens": 7 + len(PORT.split()), "completion_tokens": 10}


def test_satisfies_the_provider_protocol() -> None:
    provider: LLMProvider = ExtractiveAnswerer()

    assert isinstance(provider, LLMProvider)


@pytest.mark.parametrize("kwargs", [{"max_sentences": 0}, {"min_relevance": -0.1}, {"max_chars": 5}])
def test_rejects_unusable_settings(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        ExtractiveAnswerer(**kwargs)


async def test_fast_enough_for_the_query_budget() -> None:
    # The target is < 2 ms for five ~200-token sources; the bound here only catches an
    # accidental blow-up (say, quadratic splitting), not a slow CI machine.
    text = " ".join([PORT, STORAGE.replace("## Storage\n", ""), REFUNDS, EMBEDDINGS] * 2)
    sources = [chunk(n, text) for n in range(5)]
    answerer = ExtractiveAnswerer()
    timings = []
    for _ in range(30):
        start = time.perf_counter()
        await answerer.generate("How are dense vectors searched and where are documents stored?", sources)
        timings.append(time.perf_counter() - start)

    assert statistics.median(timings) < 0.02


# ---------------------------------------------------------------------------- helpers


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Dr. Smith prescribed 3.5 mg daily. It helped.", ["Dr. Smith prescribed 3.5 mg daily.", "It helped."]),
        ("Use a flag, e.g. this one. Or not.", ["Use a flag, e.g. this one.", "Or not."]),
        ("Add salt, i.e. Maldon. Stir.", ["Add salt, i.e. Maldon.", "Stir."]),
        ("J. R. R. Tolkien wrote it. It sold.", ["J. R. R. Tolkien wrote it.", "It sold."]),
        ("See Fig. 3 for details. Done!", ["See Fig. 3 for details.", "Done!"]),
        ("It took approx. five years. Why? Money.", ["It took approx. five years.", "Why?", "Money."]),
        ('He said "stop." Then left.', ['He said "stop."', "Then left."]),
        ("The U.S. economy grew by 2.5% in 2024.", ["The U.S. economy grew by 2.5% in 2024."]),
        ("Version 2.0 ships soon... Maybe.", ["Version 2.0 ships soon...", "Maybe."]),
        ("A wrapped\nline joins. Next one.", ["A wrapped line joins.", "Next one."]),
        ("# Title\n## Sub heading ##\nBody text.", ["Title", "Sub heading", "Body text."]),
        (
            "- first item\n- second item. Two sentences.\n1. numbered",
            ["first item", "second item.", "Two sentences.", "numbered"],
        ),
        ("| key | value |\n|-----|-------|\n| port | 8000 |", ["key; value", "port; 8000"]),
        ("> quoted **bold** and `code`", ["quoted bold and code"]),
        ("```\n---\n```", []),
        ("", []),
    ],
)
def test_split_sentences(text: str, expected: list[str]) -> None:
    assert split_sentences(text) == expected


def test_split_sentences_cuts_very_long_lines() -> None:
    text = "word, " * 200 + "end"

    units = split_sentences(text)

    assert len(units) > 1
    assert all(len(unit) <= MAX_UNIT_CHARS for unit in units)
    assert " ".join(units).split() == text.split()


@pytest.mark.parametrize(
    "family",
    [
        ["configure", "configured", "configures", "configuring", "configuration"],
        ["policy", "policies"],
        ["install", "installed", "installing", "installation", "installs"],
        ["embed", "embedding", "embeddings", "embedded", "embedder"],
        ["tokenize", "tokenized", "tokenizer", "tokenization", "tokenizing"],
        ["query", "queries", "queried", "querying"],
        ["serve", "server", "serving", "served"],
        ["use", "used", "uses", "using"],
        ["limit", "limits", "limited", "limiting", "limiter"],
        ["run", "runs", "running"],
    ],
)
def test_stem_sends_a_word_family_to_one_key(family: list[str]) -> None:
    assert len({stem(word) for word in family}) == 1, {word: stem(word) for word in family}


def test_terms_drop_stopwords_and_question_framing() -> None:
    assert terms("What does the server's default port mean?", question=True) == ["serv", "default", "port"]
    assert terms("Version v1.2 costs 3.5 dollars") == ["version", "v1.2", "cost", "3.5", "dollar"]


def test_relevance_is_the_covered_share_of_the_question() -> None:
    sentences = ["The server listens on port 8000.", "Refunds take five days.", "The port is configurable."]
    idf = Idf.from_term_sets(terms(s) for s in sentences)
    question = "Which port does the server listen on?"

    full = relevance(question, sentences[0], idf)
    part = relevance(question, sentences[2], idf)

    assert full >= 1.0
    assert 0.0 < part < 0.5
    assert relevance(question, sentences[1], idf) == 0.0


def test_relevance_counts_the_title_but_not_alone() -> None:
    idf = Idf.from_term_sets([terms("Items can be returned within 30 days."), terms("Shipping is free.")])
    question = "How many days do I have to return items for Acme?"

    with_title = relevance(question, "Items can be returned within 30 days.", idf, context="Acme returns")
    without = relevance(question, "Items can be returned within 30 days.", idf)

    assert with_title > without > 0.0
    assert relevance("How tall is Acme tower?", "Acme tower stands in Paris.", idf, context="Acme tower") == 0.0


async def test_a_follow_up_is_answered_about_the_turn_it_follows() -> None:
    sources = [
        chunk(1, "To change the log level, set RAGSERVE_LOG_LEVEL."),
        chunk(2, "The server listens on port 8000 by default. To change the port, set RAGSERVE_PORT."),
    ]
    history = [ChatTurn("user", "Which port does the server listen on?"), ChatTurn("assistant", "8000 [1]")]

    alone = await ExtractiveAnswerer().generate("How do I change it?", sources)
    followed = await ExtractiveAnswerer().generate("How do I change it?", sources, history=history)

    assert "RAGSERVE_LOG_LEVEL" in alone.text  # with nothing to say what "it" is, both qualify
    assert followed.text == "To change the port, set RAGSERVE_PORT. [2]"


async def test_stream_yields_the_answer_in_pieces_then_the_generation(corpus: list[ScoredChunk]) -> None:
    answerer = ExtractiveAnswerer()
    items = [item async for item in answerer.stream("Which port does the server listen on?", corpus)]
    *pieces, last = items
    assert isinstance(last, Generation)
    assert all(isinstance(p, TokenDelta) for p in pieces) and len(pieces) > 3
    assert "".join(p.text for p in pieces if isinstance(p, TokenDelta)) == last.text
    assert last == await answerer.generate("Which port does the server listen on?", corpus)


async def test_a_sentence_quoting_the_question_is_not_its_answer() -> None:
    sources = [
        chunk(1, 'The same question works without the server: ragserve query "Which file formats can I ingest?".'),
        chunk(2, "ragserve ingests plain text, Markdown, HTML, PDF, Word, JSON and JSON Lines files."),
    ]
    generation = await ExtractiveAnswerer().generate("Which file formats can I ingest?", sources)
    assert generation.text.startswith("ragserve ingests plain text")
    assert generation.cited == [2]


@pytest.mark.parametrize(
    "family", [("ingest", "ingestion", "ingested"), ("collect", "collection"), ("suggest", "suggestion")]
)
def test_nouns_in_tion_meet_their_verbs(family: tuple[str, ...]) -> None:
    assert len({stem(word) for word in family}) == 1


def test_short_tion_words_keep_their_stems() -> None:
    assert stem("question") != stem("quest")
    assert stem("section") == "section"
