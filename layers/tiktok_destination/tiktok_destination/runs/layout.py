"""Every key the destination writes in the state bucket, in one place.

```
config/destinations.toml                   the configuration document (CONFIG_KEY)
runs/<run_id>/                             one run: run.json, validated/, rejects/, plan/,
                                           calls/, failures/, report.json (RunPaths)
executions/<execution>/                    an execution without a run of its own: report,
                                           raised workflow-action markers
audiences/<advertiser>/<digest>/           one custom audience: its registry record and
                                           last committed snapshot (audiences/)
leases/                                    one live run per audience or event set (runs/leases.py)
leases/export-arrivals/                    parts of an export seen arriving (inputs/exports.py)
```

Keys are built only here, so a newcomer reads the bucket's layout in one file, and a change
to it is one diff.
"""

from __future__ import annotations

RUNS_PREFIX = "runs/"
EXECUTIONS_PREFIX = "executions/"


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
        """The index of validate's hashed identifier files (``ranges.merge_ranges``)."""
        return f"{self.prefix}validated/members.json"

    @property
    def events(self) -> str:
        """The index of validate's event row files (``ranges.merge_ranges``)."""
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
        return f"{self.prefix}plan/{plan_id}/"

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
