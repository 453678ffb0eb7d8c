"""Dated revision files, applied in order by ``engine.store.db.upgrade``."""
