"""`ragserve keys create|list|revoke`: API keys from the command line, straight to the database.

Run where the service's database is reachable (the data directory, or RAGSERVE_DATABASE_URL).
A created key is printed once; only its digest is stored.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from rich.console import Console
from rich.table import Table

from ragserve.relational.database import Database
from ragserve.security.keys import ApiKeys
from ragserve.security.principal import SCOPES
from ragserve.settings import Settings


def add_parser(sub: Any) -> None:
    keys = sub.add_parser("keys", help="create, list and revoke API keys")
    actions = keys.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = actions.add_parser("create", help="create a key (printed once)")
    create.add_argument("--name", required=True)
    create.add_argument("--tenant", help="tenant (RAGSERVE_DEFAULT_TENANT)")
    create.add_argument("--scope", action="append", choices=SCOPES, required=True, help="repeat for several")
    create.add_argument("--collection", action="append", help="only these collections (repeat); default: all")
    create.add_argument("--expires-in-days", type=float)
    create.add_argument("--monthly-tokens", type=int)
    create.add_argument("--monthly-usd", type=float)
    listing = actions.add_parser("list", help="list keys (never their secrets)")
    listing.add_argument("--tenant", help="one tenant only")
    listing.add_argument("--json", action="store_true")
    revoke = actions.add_parser("revoke", help="revoke a key by id (rsk_…)")
    revoke.add_argument("key_id")


async def run(settings: Settings, args: argparse.Namespace, out: Console) -> int:
    pepper = settings.api_key_pepper.get_secret_value().encode() if settings.api_key_pepper else b""
    db = Database.open(settings.database_url, settings.data_dir)
    try:
        keys = ApiKeys(db, pepper=pepper)
        if args.action == "create":
            days = args.expires_in_days
            created = await keys.create(
                args.tenant or settings.default_tenant,
                args.name,
                args.scope,
                collections=args.collection,
                expires_in_s=None if days is None else days * 86400,
                monthly_tokens=args.monthly_tokens,
                monthly_usd=args.monthly_usd,
            )
            out.print(created.key, highlight=False, soft_wrap=True)
            out.print(
                f"[dim]{created.info.id} for tenant {created.info.tenant}; store it now, it is not shown again[/]"
            )
            return 0
        if args.action == "list":
            now = time.time()
            found = [k.as_dict(now) for k in await keys.list(args.tenant)]
            if args.json:
                out.print_json(json.dumps(found))
            else:
                out.print(_table(found))
            return 0
        revoked = await keys.revoke(args.key_id, None)
        out.print(f"{revoked.id} revoked")
        return 0
    finally:
        db.close()


def _table(rows: list[dict[str, Any]]) -> Table:
    table = Table("id", "tenant", "name", "scopes", "collections", "state", "expires")
    for row in rows:
        expires = row["expires_at"]
        table.add_row(
            str(row["id"]),
            str(row["tenant"]),
            str(row["name"]),
            " ".join(row["scopes"]),
            "all" if row["collections"] is None else ", ".join(row["collections"]),
            str(row["state"]),
            "never" if expires is None else time.strftime("%Y-%m-%d %H:%M", time.gmtime(expires)),
        )
    return table
