"""`ragserve keys create|list|revoke`: keys made on the command line work against the service's database."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest

from ragserve.cli import main
from ragserve.errors import AuthenticationError
from ragserve.relational.database import Database
from ragserve.security.keys import ApiKeys
from secrets_registry import register

KEY = re.compile(r"rsk_[0-9a-f]{8}_[A-Za-z0-9_-]{43}")


def run(capsys: pytest.CaptureFixture[str], data_dir: Path, *args: str) -> tuple[int, str, str]:
    code = main(["--data-dir", str(data_dir), "keys", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_create_list_revoke(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys, tmp_path, "create", "--name", "ci bot", "--tenant", "acme", "--scope", "query", "--collection", "docs"
    )
    assert code == 0
    found = KEY.search(out.replace("\n", ""))
    assert found is not None
    key = found.group(0)
    register(key)
    db = Database.open(None, tmp_path)
    try:
        principal = asyncio.run(ApiKeys(db).authenticate(key))
        assert (principal.tenant, principal.scopes, principal.collections) == (
            "acme",
            frozenset({"query"}),
            frozenset({"docs"}),
        )

        code, out, _ = run(capsys, tmp_path, "list", "--json")
        assert code == 0
        [listed] = json.loads(out)
        assert listed["id"] == key[:12] and listed["state"] == "active" and key not in out

        assert run(capsys, tmp_path, "revoke", listed["id"])[0] == 0
        with pytest.raises(AuthenticationError, match="revoked"):
            asyncio.run(ApiKeys(db).authenticate(key))
        code, _, err = run(capsys, tmp_path, "revoke", "rsk_00000000")
        assert code == 2 and "not found" in err
    finally:
        db.close()


def test_bad_input_is_refused_clearly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, tmp_path, "create", "--name", "x", "--tenant", "bad tenant!", "--scope", "query")
    assert code == 2 and "tenant" in err
    with pytest.raises(SystemExit):
        main(["--data-dir", str(tmp_path), "keys", "create", "--name", "x", "--scope", "root"])
