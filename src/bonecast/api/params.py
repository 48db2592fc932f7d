"""Path parameters shared by the REST API and the web pages.

Record ids are the database's 64-bit integers: an id outside 1..2**63-1 can name no record and
is refused with 422 before it reaches the database (SQLite cannot even bind it).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Path

MAX_RECORD_ID = 2**63 - 1
"""The largest signed 64-bit integer: the largest id SQLite and PostgreSQL ``BIGINT`` store."""

RecordId = Annotated[int, Path(ge=1, le=MAX_RECORD_ID, description="a record id (1 to 2^63 - 1)")]
