"""The store: the database behind one small interface (SQLite or PostgreSQL, same code)."""

from tiller.store.engine import connect, mask_url
from tiller.store.migrate import upgrade

__all__ = ["connect", "mask_url", "upgrade"]
