"""The database layer: models, migrations, engines and repositories.

``db`` opens a SQLite file or a PostgreSQL server and applies the migrations;
``models`` holds the tables; one repository module per aggregate
(``incidents``, ``alerts``, ``events``, ``jobs``, ``actions``, ``orgs``,
``snapshots``, ``matches``, ``deploys``, ``approvals``, ``recommendations``,
``messages``, ``proposals``) holds the queries, as functions that take a
``Session``, leave the commit to the caller and return models or
dataclasses. See ``docs/store.md``.
"""
