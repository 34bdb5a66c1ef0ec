"""Engines: where backup bytes come from and go back to (PostgreSQL, the uploads tree)."""
