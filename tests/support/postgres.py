"""Where the tests' PostgreSQL is (the one at 127.0.0.1:5432 unless TPI_TEST_POSTGRES says).

A module of its own because test modules cannot import it from `conftest`: with several
conftest.py files in the tree, `import conftest` finds whichever pytest loaded last."""

from __future__ import annotations

import os

POSTGRES_URL = os.environ.get("TPI_TEST_POSTGRES", "postgres://postgres@127.0.0.1:5432/test")
