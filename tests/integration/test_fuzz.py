"""Schemathesis against a real server's /openapi.json: no 5xx, no response off its schema.

Every operation gets generated requests (valid and invalid, plus stateful sequences that
follow the schema's links); `schemathesis.toml` holds the project's check settings.
`make fuzz` runs the same with more examples.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from servers import running_server

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = int(os.environ.get("RAGSERVE_FUZZ_EXAMPLES", "25"))


def test_generated_requests_get_no_server_error_and_match_the_schema(
    make_data_dir: Callable[[], Path], tmp_path: Path
) -> None:
    with running_server(make_data_dir(), tmp_path) as server:
        seed = {"documents": [{"id": "port.md", "text": "The server listens on port 8000 by default."}]}
        assert httpx.post(f"{server.url}/v1/documents", json=seed, timeout=60).status_code == 201
        run = subprocess.run(
            [
                str(Path(sys.executable).parent / "schemathesis"),
                "--config-file",
                str(REPO / "schemathesis.toml"),
                "--no-color",
                "run",
                f"{server.url}/openapi.json",
                "--max-examples",
                str(EXAMPLES),
                "--workers",
                "1",
                "--request-timeout",
                "30",
                "--seed",
                "1",
            ],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=900,
        )
        output = run.stdout + run.stderr
        assert run.returncode == 0, output
        generated = re.search(r"(\d+) generated", output)
        assert generated is not None and int(generated.group(1)) >= 200, output  # a few hundred cases, not none
