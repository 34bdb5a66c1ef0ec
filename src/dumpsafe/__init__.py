"""dumpsafe: streaming, verified, atomically restorable PostgreSQL + uploads backups."""

__version__ = "0.1.0"
