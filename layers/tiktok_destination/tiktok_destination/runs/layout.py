"""Every key the destination writes in the state bucket, in one place.

```
config/destinations.toml                   the configuration document (CONFIG_KEY)
runs/<run_id>/                             one run: run.json, validated/, rejects/, calls/,
                                           failures/, report.json (RunPaths);
runs/<run_id>/validate/<id>/               its ranges' outputs (ValidateKeys)
runs/<run_id>/plan/<id>/                   its diff or event plan and batches (PlanPaths)
executions/<execution>/                    an execution without a run of its own: report,
                                           raised workflow-action markers
audiences/<advertiser>/<digest>/           one custom audience: its registry record, last
                                           committed snapshot and journals (AudienceKeys)
leases/                                    one live run per audience or event set (runs/leases.py)
leases/export-arrivals/                    parts of an export seen arriving (inputs/exports.py)
oauth/used-states/                         single-use markers of the OAuth callback (oauth/)
```

Every prefix is named here and every key is built here, except the names inside
``leases/``, which the lease and export-arrival rules derive from their own inputs under the
prefixes below; so a newcomer reads the bucket's layout in one file.
"""

from __future__ import annotations

import hashlib
import re

RUNS_PREFIX = "runs/"
#: the OAuth callback's single-use markers, one per signed ``state`` nonce
USED_STATE_PREFIX = "oauth/used-states/"
EXECUTIONS_PREFIX = "executions/"
AUDIENCES_PREFIX = "audiences/"
LEASE_PREFIX = "leases/"
#: parts of an export seen arriving, one object per part (``inputs/exports.py``)
ARRIVALS_PREFIX = f"{LEASE_PREFIX}export-arrivals/"


def execution_name(execution_id: str) -> str:
    """The execution's own name: the last part of its ARN (a bare name stays as it is)."""
    return execution_id.rsplit(":", 1)[-1]


def execution_report_key(execution_id: str) -> str:
    """The report of an execution that has no run of its own to write under (its input
    named none, or its run belongs to another execution)."""
    return f"{EXECUTIONS_PREFIX}{execution_name(execution_id)}/report.json"


def raised_marker_key(execution_id: str, notification_id: str) -> str:
    """Written when Notify raises a workflow action; found again, it means a redrive."""
    return f"{EXECUTIONS_PREFIX}{execution_name(execution_id)}/raised/{notification_id}.json"


class RunPaths:
    """Keys under ``runs/<run_id>/`` in the state bucket."""

    def __init__(self, run_id: str):
        self.run_id = run_id
        self.prefix = f"{RUNS_PREFIX}{run_id}/"

    @property
    def run(self) -> str:
        return f"{self.prefix}run.json"

    @property
    def members(self) -> str:
        """The index of validate's hashed identifier files (``range_outputs.merge_ranges``)."""
        return f"{self.prefix}validated/members.json"

    @property
    def events(self) -> str:
        """The index of validate's event row files (``range_outputs.merge_ranges``)."""
        return f"{self.prefix}validated/events.json"

    @property
    def export(self) -> str:
        """An export in parts: its folder, completion and pinned parts (key, ETag, size)."""
        return f"{self.prefix}export.json"

    @property
    def validation(self) -> str:
        return f"{self.prefix}validation.json"

    def rejects(self, step: str) -> str:
        return f"{self.prefix}rejects/{step}.csv"

    @property
    def rejects_prefix(self) -> str:
        return f"{self.prefix}rejects/"

    def plan(self, plan_id: str) -> str:
        """The prefix of one plan (``PlanPaths`` names the keys in it)."""
        return f"{self.prefix}plan/{plan_id}/"

    def validate(self, validate_id: str) -> ValidateKeys:
        return ValidateKeys(f"{self.prefix}validate/{validate_id}/")

    def calls(self, execution_id: str) -> str:
        return f"{self.prefix}calls/{execution_name(execution_id)}/"

    @property
    def failures(self) -> str:
        return f"{self.prefix}failures/"

    @property
    def report(self) -> str:
        return f"{self.prefix}report.json"

    @property
    def ensure(self) -> str:
        return f"{self.prefix}audience.json"


class ValidateKeys:
    """Keys under ``runs/<run>/validate/<validate id>/``: one way of validating one input."""

    def __init__(self, prefix: str):
        self.prefix = prefix

    @property
    def plan(self) -> str:
        return f"{self.prefix}plan.json"

    @property
    def manifest(self) -> str:
        return f"{self.prefix}manifest.json"

    def range_prefix(self, index: int) -> str:
        return f"{self.prefix}range-{index:05d}/"

    def done(self, index: int) -> str:
        return f"{self.range_prefix(index)}done.json"

    def range_shard(self, index: int, shard: str) -> str:
        """One range's hashed identifiers of one shard."""
        return f"{self.range_prefix(index)}shard-{shard}.txt"

    def range_events(self, index: int) -> str:
        return f"{self.range_prefix(index)}events.jsonl"

    def range_rejects(self, index: int) -> str:
        return f"{self.range_prefix(index)}rejects.csv"


class PlanPaths:
    """Keys in one plan's prefix (``RunPaths.plan``): an audience diff or an event plan.

    The prefix itself is carried in state and in audience journals, so this is built from it.
    """

    def __init__(self, prefix: str):
        self.prefix = prefix

    @property
    def plan(self) -> str:
        return f"{self.prefix}plan.json"

    @property
    def manifest(self) -> str:
        """The send Map's items: one per batch."""
        return f"{self.prefix}manifest.json"

    @property
    def done_prefix(self) -> str:
        return f"{self.prefix}done/"

    def done(self, index: int) -> str:
        """Written when a batch was sent, so a redrive never sends it twice."""
        return f"{self.done_prefix}{index:05d}.json"

    def event_batch(self, index: int) -> str:
        return f"{self.prefix}batches/{index:05d}.json"

    def member_batch(self, stem: str, number: int) -> str:
        return f"{self.prefix}batches/{stem}-{number:05d}.txt"

    @property
    def diff(self) -> str:
        return f"{self.prefix}diff.json"

    @property
    def diff_items(self) -> str:
        """The DiffShards Map's items: one per shard."""
        return f"{self.prefix}diff-items.json"

    def diff_marker(self, shard: str) -> str:
        """Written last by a shard's diff: its counts, batch files and tails."""
        return f"{self.prefix}diff/shard-{shard}.json"

    def shard_prefix(self, kind: str) -> str:
        """``snapshot``, ``adds`` or ``deletes``: one file per shard under it."""
        return f"{self.prefix}{kind}/"

    def shard_file(self, kind: str, shard: str) -> str:
        return f"{self.shard_prefix(kind)}shard-{shard}.txt"

    def whole_file(self, kind: str) -> str:
        """``adds`` or ``deletes`` of a plan written before sharding: one file."""
        return f"{self.prefix}{kind}.txt"

    def tail(self, action: str, shard: str) -> str:
        return f"{self.prefix}tails/{action}-{shard}.txt"

    @property
    def members_sorted(self) -> str:
        return f"{self.prefix}members.sorted.txt"

    @property
    def committed(self) -> str:
        """Written when the plan's members became the audience's committed snapshot."""
        return f"{self.prefix}{COMMITTED_MARKER}"


#: a plan's layout, recorded in it: ``shards`` keeps adds, deletes and the new snapshot per
#: shard (a plan without it wrote one file per action, read by ``PlanPaths.whole_file``)
PLAN_LAYOUT = "shards"
#: the marker ``PlanPaths.committed`` names, read by the next plan and by the commit
COMMITTED_MARKER = "committed.json"


def used_state_key(nonce: str) -> str:
    """Written once, with If-None-Match, when an OAuth ``state`` is used: a replay finds it."""
    return f"{USED_STATE_PREFIX}{nonce}"


def advertiser_audiences_prefix(advertiser_id: str) -> str:
    """Every audience of one advertiser: one folder per audience name under it."""
    return f"{AUDIENCES_PREFIX}{advertiser_id}/"


_REGISTRY_KEY = re.compile(rf"{AUDIENCES_PREFIX}[^/]+/[0-9a-f]{{16}}/audience\.json")


def is_audience_registry(key: str) -> bool:
    """Whether ``key`` is some audience's registry record (``AudienceKeys.registry``)."""
    return _REGISTRY_KEY.fullmatch(key) is not None


class AudienceKeys:
    """Keys under ``audiences/<advertiser>/<name hash>/``: registry, snapshot, journals.

    They outlive the runs that write them (``runs/`` expires).
    """

    def __init__(self, advertiser_id: str, audience_name: str):
        digest = hashlib.sha256(audience_name.encode()).hexdigest()[:16]
        self.prefix = f"{advertiser_audiences_prefix(advertiser_id)}{digest}/"

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
