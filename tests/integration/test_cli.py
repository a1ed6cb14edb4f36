"""The `ragserve` command, run in process through `ragserve.cli.main` (each call builds its own
RAG on the data directory, as the command does) and, a few times, as a real subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ragserve.cli import main

SUBCOMMANDS = ("ingest", "query", "search", "eval", "serve")
BINARY = bytes(range(256)) * 16


def flat(text: str) -> str:
    """`text` with runs of whitespace made one space, so console line wrapping does not matter."""
    return " ".join(text.split())


class Cli:
    """Runs `ragserve --data-dir DIR ...` in this process and captures what it prints."""

    def __init__(self, data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
        self.data_dir = data_dir
        self.capsys = capsys

    def __call__(self, *args: str) -> tuple[int, str, str]:
        self.capsys.readouterr()
        code = main(["--data-dir", str(self.data_dir), *args])
        captured = self.capsys.readouterr()
        return code, captured.out, captured.err


@pytest.fixture(scope="module")
def data_dir(make_data_dir: Callable[[], Path]) -> Path:
    return make_data_dir()


@pytest.fixture
def cli(data_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Cli:
    monkeypatch.setenv("COLUMNS", "400")  # rich reads it at print time; long tmp paths stay on one line
    return Cli(data_dir, capsys)


def write_docs(root: Path) -> Path:
    docs = root / "docs"
    docs.mkdir()
    (docs / "port.md").write_text("# Server\n\nThe server listens on port 8000 by default.\n", encoding="utf-8")
    (docs / "storage.txt").write_text(
        "Documents are kept in a SQLite database inside the data directory.\n", encoding="utf-8"
    )
    (docs / "broken.txt").write_bytes(BINARY)
    return docs


@pytest.fixture(scope="module")
def docs_collection(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The two good documents ingested into collection "docs" of the module's data directory."""
    docs = write_docs(tmp_path_factory.mktemp("cli-docs"))
    assert main(["--data-dir", str(data_dir), "ingest", str(docs), "--collection", "docs"]) == 0
    return "docs"


def write_beir(root: Path) -> Path:
    """Five documents, three queries; each query's words occur in exactly one document."""
    corpus = [
        ("d1", "Photosynthesis", "Plants turn sunlight into chemical energy through photosynthesis."),
        ("d2", "Eiffel Tower", "The Eiffel Tower in Paris was completed in 1889."),
        ("d3", "Volcanoes", "Volcanoes erupt molten lava from deep inside the crust."),
        ("d4", "Honeybees", "Honeybees perform a waggle dance to show where flowers are."),
        ("d5", "Glaciers", "Glaciers carve wide valleys as the ice slowly moves downhill."),
    ]
    queries = [("q1", "honeybees waggle dance"), ("q2", "Eiffel Tower Paris"), ("q3", "volcanoes erupt lava")]
    root.mkdir(parents=True)
    (root / "corpus.jsonl").write_text(
        "".join(json.dumps({"_id": i, "title": t, "text": x}) + "\n" for i, t, x in corpus), encoding="utf-8"
    )
    (root / "queries.jsonl").write_text(
        "".join(json.dumps({"_id": i, "text": x}) + "\n" for i, x in queries), encoding="utf-8"
    )
    (root / "qrels").mkdir()
    (root / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\nq1\td4\t1\nq2\td2\t1\nq3\td3\t1\n", encoding="utf-8"
    )
    return root


# --------------------------------------------------------------------- ingest


def test_ingest_reports_a_bad_file_and_goes_on(cli: Cli, tmp_path: Path) -> None:
    docs = write_docs(tmp_path)
    code, _, err = cli("ingest", str(docs), "--collection", "ingest-test")
    assert code == 0, err
    report = flat(err)
    assert "ingest-test: 2 created, 0 updated, 0 unchanged" in report
    assert "1 failed" in report
    assert f"failed {(docs / 'broken.txt').as_posix()}: binary content, not text" in report
    assert "port.md" not in report.split("failed", 1)[1]

    code, _, err = cli("ingest", str(docs), "--collection", "ingest-test")
    assert code == 0, err
    assert "ingest-test: 0 created, 0 updated, 2 unchanged, 0 chunks written, 1 failed" in flat(err)

    (docs / "port.md").write_text("The server listens on port 9000 now.\n", encoding="utf-8")
    code, _, err = cli("ingest", str(docs), "--collection", "ingest-test")
    assert code == 0, err
    assert "ingest-test: 0 created, 1 updated, 1 unchanged" in flat(err)


def test_ingest_of_only_bad_files_exits_1(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "broken.txt").write_bytes(BINARY)
    (tmp_path / "image.xyz").write_bytes(b"not a format we know")
    code, _, err = cli("ingest", str(tmp_path), "--collection", "only-bad")
    assert code == 1
    report = flat(err)
    assert "0 created" in report and "2 failed" in report
    assert "unsupported file type '.xyz'" in report


def test_ingest_of_a_missing_path_exits_2(cli: Cli, tmp_path: Path) -> None:
    code, _, err = cli("ingest", str(tmp_path / "nowhere"))
    assert code == 2
    assert "error: path does not exist" in flat(err)
    assert "nowhere" in err


def test_ingest_into_an_invalid_collection_exits_2(cli: Cli, tmp_path: Path) -> None:
    code, _, err = cli("ingest", str(tmp_path), "--collection", "a b")
    assert code == 2
    assert "collection 'a b' is invalid" in flat(err)


# ------------------------------------------------------------ search, query


def test_search_prints_results(cli: Cli, docs_collection: str) -> None:
    code, out, err = cli("search", "Which port does the server use?", "-c", docs_collection, "--json")
    assert code == 0, err
    results: list[dict[str, Any]] = json.loads(out)
    assert results[0]["document_id"].endswith("docs/port.md")
    assert "8000" in results[0]["text"]
    assert set(results[0]) == {"document_id", "chunk_id", "title", "source", "score", "text"}

    code, out, err = cli("search", "SQLite database", "-c", docs_collection, "--mode", "keyword", "-k", "1")
    assert code == 0, err
    lines = out.strip().splitlines()
    assert lines[0].startswith("[1] ") and "storage.txt" in lines[0]
    assert "SQLite database" in flat(out)
    assert "[2]" not in out


def test_search_filter_on_source(cli: Cli, docs_collection: str) -> None:
    _, out, _ = cli("search", "database", "-c", docs_collection, "--mode", "dense", "--json")
    sources = {r["source"] for r in json.loads(out)}
    port = next(s for s in sources if s.endswith("port.md"))
    code, out, err = cli("search", "database", "-c", docs_collection, "--filter", f"source={port}", "--json")
    assert code == 0, err
    assert [r["source"] for r in json.loads(out)] == [port]

    code, _, err = cli("search", "database", "-c", docs_collection, "--filter", "no-equals-sign")
    assert code == 2
    assert "expected KEY=VALUE" in err


def test_query_json(cli: Cli, docs_collection: str) -> None:
    code, out, err = cli("query", "Which port does the server listen on?", "-c", docs_collection, "--json")
    assert code == 0, err
    body = json.loads(out)
    assert body["answered"] is True
    assert "8000" in body["answer"]
    assert "[1]" in body["answer"]
    assert body["citations"][0]["number"] == 1
    assert body["citations"][0]["document_id"].endswith("docs/port.md")
    assert body["provider"] == "extractive"
    assert body["request_id"] == "cli"
    assert body["cached"] == "none"


def test_query_plain_text(cli: Cli, docs_collection: str) -> None:
    code, out, err = cli("query", "Which port does the server listen on?", "-c", docs_collection)
    assert code == 0, err
    answer, _, sources = out.partition("Sources")
    assert "8000" in answer and "[1]" in answer
    assert "[1]" in sources and "port.md" in sources

    code, out, err = cli("query", "Who painted the Mona Lisa?", "-c", docs_collection)
    assert code == 0, err
    assert out.startswith("I don't know")
    assert "Sources" not in out


def test_query_of_an_invalid_mode_is_a_usage_error(cli: Cli) -> None:
    with pytest.raises(SystemExit) as exc:
        cli("query", "x", "--mode", "fuzzy")
    assert exc.value.code == 2
    assert "invalid choice: 'fuzzy'" in cli.capsys.readouterr().err


# ----------------------------------------------------------------------- eval


def test_eval_json_prints_metrics_per_mode(cli: Cli, tmp_path: Path) -> None:
    dataset = write_beir(tmp_path / "tiny")
    code, out, err = cli("eval", str(dataset), "--json")
    assert code == 0, err
    metrics = json.loads(out)
    assert set(metrics) == {"bm25", "dense", "hybrid"}
    for mode, values in metrics.items():
        assert set(values) == {"ndcg@10", "recall@10", "recall@100", "mrr@10"}, mode
        assert all(0.0 <= v <= 1.0 for v in values.values()), (mode, values)
        # Five documents: every relevant one is somewhere in the top 10 of every query.
        assert values["recall@10"] == values["recall@100"] == 1.0, mode
        assert values["ndcg@10"] > 0.8, (mode, values)
    # Each query's words occur in its one relevant document only: BM25 ranks it first.
    assert metrics["bm25"] == {"ndcg@10": 1.0, "recall@10": 1.0, "recall@100": 1.0, "mrr@10": 1.0}


def test_eval_table_and_drop(cli: Cli, tmp_path: Path) -> None:
    dataset = write_beir(tmp_path / "tiny")
    code, out, err = cli("eval", str(dataset), "--mode", "bm25", "--collection", "eval-scratch", "--drop")
    assert code == 0, err
    lines = out.strip().splitlines()
    assert "3 queries, 5 documents" in lines[0]
    assert lines[1].split() == ["mode", "nDCG@10", "R@10", "R@100", "MRR@10"]
    assert lines[2].split() == ["bm25", "1.0000", "1.0000", "1.0000", "1.0000"]
    assert len(lines) == 3
    # --drop removed the scratch collection.
    code, out, _ = cli("search", "waggle dance", "-c", "eval-scratch", "--json")
    assert code == 0
    assert json.loads(out) == []


def test_eval_with_a_missing_split_exits_2(cli: Cli, tmp_path: Path) -> None:
    dataset = write_beir(tmp_path / "tiny")
    code, out, err = cli("eval", str(dataset), "--split", "dev", "--json")
    assert code == 2
    assert out == ""
    message = flat(err)
    assert "error:" in message
    assert "no split 'dev'" in message
    assert "available splits: test" in message


def test_eval_of_a_missing_directory_exits_2(cli: Cli, tmp_path: Path) -> None:
    code, _, err = cli("eval", str(tmp_path / "nothing"))
    assert code == 2
    assert "BEIR dataset directory not found" in flat(err)


# ----------------------------------------------------------------------- help


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_help_of_each_subcommand(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: ragserve {command} ")
    assert "--help" in out


def test_help_lists_the_subcommands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for command in SUBCOMMANDS:
        assert command in out
    assert "--data-dir" in out


def test_no_subcommand_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main([])
    assert exc.value.code == 2
    assert "required: COMMAND" in capsys.readouterr().err


# ------------------------------------------------------------- real processes


def run_process(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "400"}
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.slow
def test_installed_command_queries(data_dir: Path, docs_collection: str, tmp_path: Path) -> None:
    command = Path(sys.executable).parent / "ragserve"
    assert command.is_file(), "the ragserve console script is not installed next to this Python"
    done = run_process(
        str(command), "--data-dir", str(data_dir), "query", "Which port does the server listen on?",
        "-c", docs_collection, "--json", cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    body = json.loads(done.stdout)
    assert body["answered"] is True and "8000" in body["answer"]
    assert body["citations"][0]["document_id"].endswith("docs/port.md")


@pytest.mark.slow
def test_python_dash_m(data_dir: Path, tmp_path: Path) -> None:
    for module in ("ragserve", "ragserve.cli"):
        done = run_process(sys.executable, "-m", module, "eval", "--help", cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith("usage: ragserve eval ")
    missing = str(tmp_path / "nowhere")
    done = run_process(sys.executable, "-m", "ragserve", "--data-dir", str(data_dir), "ingest", missing, cwd=tmp_path)
    assert done.returncode == 2
    assert "path does not exist" in done.stderr
