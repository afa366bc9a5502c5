"""Where an audience's state lives in S3: its registry, committed snapshot and journals.

Keys under ``audiences/<advertiser>/<name hash>/`` outlive the runs that write them
(``runs/`` expires); the markers a plan leaves in its own prefix (``LAYOUT``,
``COMMITTED_MARKER``) are read by the next plan and by the commit.
"""

from __future__ import annotations

import hashlib


class AudienceKeys:
    """Keys under ``audiences/<advertiser>/<name hash>/``: registry, snapshot, journals."""

    def __init__(self, advertiser_id: str, audience_name: str):
        digest = hashlib.sha256(audience_name.encode()).hexdigest()[:16]
        self.prefix = f"audiences/{advertiser_id}/{digest}/"

    @property
    def registry(self) -> str:
        return f"{self.prefix}audience.json"

    @property
    def snapshot(self) -> str:
        """The committed snapshot: a manifest naming one immutable file per shard."""
        return f"{self.prefix}snapshot.json"

    @property
    def legacy_snapshot(self) -> str:
        """The one-file snapshot of earlier versions, read while no manifest exists."""
        return f"{self.prefix}snapshot.txt"

    @property
    def generations_prefix(self) -> str:
        return f"{self.prefix}snapshots/"

    def generation(self, plan_id: str, shard: str) -> str:
        return f"{self.generations_prefix}{plan_id}/shard-{shard}.txt"

    @property
    def pending_prefix(self) -> str:
        return f"{self.prefix}pending/"

    def pending(self, run_id: str) -> str:
        return f"{self.pending_prefix}{run_id}.json"


#: A plan's layout: ``shards`` keeps adds, deletes and the new snapshot per shard.
LAYOUT = "shards"
#: written into a plan's prefix when its members became the committed snapshot
COMMITTED_MARKER = "committed.json"
