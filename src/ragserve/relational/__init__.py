"""The relational state (API keys, the usage ledger): SQLite in the data directory, or PostgreSQL."""
