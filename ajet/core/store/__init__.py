"""Where episodes and their LLM calls are kept: SQLite (WAL) on disk by default, in memory for tests."""
