"""The store: the database behind one small interface (SQLite or PostgreSQL, same code).

Only this package (and the tables in ``models/``) speaks SQL.  Each area has its module
of plain functions over a :class:`~tiller.store.repo.Store`: reads take the store, writes
take the store and a transaction (``with store.transaction() as tx``), so a stage can put
its output and its checkpoint in one transaction.  Callers type that transaction as
:data:`Tx` and never import SQLAlchemy themselves.
"""

from sqlalchemy import Connection as Tx

from tiller.store.engine import connect, mask_url
from tiller.store.migrate import upgrade

__all__ = ["Tx", "connect", "mask_url", "upgrade"]
