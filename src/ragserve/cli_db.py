"""`ragserve db upgrade|current`: the relational schema, migrated and inspected by the operator.

A shared PostgreSQL is never migrated behind the operator's back by a replica that happens
to start first (only an empty one is, at first start): run `ragserve db upgrade` once per
release, before rolling it out, where RAGSERVE_DATABASE_URL reaches the database. Until
then `/health/ready` answers 503 naming this command. SQLite in a data directory migrates
itself at open; these commands work on it too.
"""

from __future__ import annotations

import argparse
from typing import Any

from rich.console import Console

from ragserve.relational.database import Database
from ragserve.settings import Settings


def add_parser(sub: Any) -> None:
    db = sub.add_parser("db", help="migrate or inspect the relational database schema")
    actions = db.add_subparsers(dest="action", required=True, metavar="ACTION")
    upgrade = actions.add_parser("upgrade", help="migrate the schema to this release's newest revision")
    upgrade.add_argument("revision", nargs="?", default="head", help="target revision (default: head)")
    actions.add_parser("current", help="show the schema's revision and whether it is this release's head")


def run(settings: Settings, args: argparse.Namespace, out: Console) -> int:
    """0 when the schema ends up (or is) at the head; 1 when it is not (`current` on an old schema)."""
    # Only connect: the commands below say what they do, rather than `open` migrating quietly first.
    db = Database.open(settings.database_url, settings.data_dir, migrate_schema=False)
    try:
        if args.action == "upgrade":
            before = db.schema_state()
            after = db.upgrade(args.revision)
            if after.current == before.current:
                out.print(f"{_where(db)}: already at {after.describe()}", highlight=False, soft_wrap=True)
            else:
                was = ", ".join(before.current) or "none"
                out.print(f"{_where(db)}: upgraded {was} -> {after.describe()}", highlight=False, soft_wrap=True)
            return 0 if after.status != "behind" or args.revision != "head" else 1
        state = db.schema_state()
        out.print(f"{_where(db)}: {state.describe()}", highlight=False, soft_wrap=True)
        return 0 if state.status == "current" else 1
    finally:
        db.close()


def _where(db: Database) -> str:
    # Never the password: the URL is printed to a terminal (and its scrollback).
    return db.engine.url.render_as_string(hide_password=True)
