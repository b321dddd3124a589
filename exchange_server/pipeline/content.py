"""A result segment's content while it waits for delivery: its member files and their index.

The content of a segment is prepared in a folder of its own before the segment is assigned
(:mod:`exchange_server.pipeline.queries`); ``content.json``, written last and atomically, names
the files and carries the per-resource facts of the segment's report.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from exchange_common.fs import atomic_write

__all__ = ["CONTENT_INDEX", "SegmentContent"]

#: The index of a segment's prepared content, in its folder.
CONTENT_INDEX = "content.json"


@dataclass(frozen=True)
class SegmentContent:
    """What a segment carries besides its statuses: member files and per-resource facts;
    ``source``: the answer bundle it was made from (empty for the node's own content)."""

    members: list[tuple[str, str]]  # (member name, file name inside the content folder)
    entries: dict[str, dict[str, Any]]  # resource -> counts for the report
    source: str = ""

    def write(self, folder: Path) -> None:
        """Write the index ``folder/content.json`` (last, atomically: the files it names are
        complete when it exists)."""
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        atomic_write(
            folder / CONTENT_INDEX,
            json.dumps(asdict(self), ensure_ascii=False).encode(),
            0o600,
        )

    @classmethod
    def read(cls, folder: Path) -> SegmentContent | None:
        """The index written by :meth:`write`, or None when there is none."""
        index = folder / CONTENT_INDEX
        if not index.is_file():
            return None
        return cls(**json.loads(index.read_text("utf-8")))
