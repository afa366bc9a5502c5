"""A run: one input object sent to one destination through one data template.

The run id is derived from the input (bucket, key, ETag, destination, data template), so a
redrive or a new execution of the same input finds the work the earlier one finished and
does not repeat it. Everything a run writes lives under ``runs/<run_id>/`` in the state
bucket (``runs/layout.py`` builds every key); state payloads carry only these keys.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from tiktok_destination.config.document import ResolvedTemplate
from tiktok_destination.config.settings import Settings
from tiktok_destination.runs.layout import RunPaths


class Source(BaseModel):
    """The run's input: one object, or an export in parts (``exports.py``)."""

    model_config = ConfigDict(extra="forbid")

    bucket: str
    #: the object's key; for an export in parts, its folder (ending in "/")
    key: str
    #: the object's ETag; for an export in parts, one tag of every part's key and ETag
    etag: str
    format: Literal["csv", "parquet"]
    #: an export in parts: how many (the parts themselves are in ``RunPaths.export``)
    parts: int = 0
    #: an export in parts: how it was known complete ("marker", "manifest",
    #: "quiet_period", "folder")
    completion: str | None = None

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


class RunOptions(BaseModel):
    """The run-shaping settings, resolved once by Preflight and carried in the run.

    Every step of one execution (and a redrive of it) then uses the values the run started
    with, even if the environment or the configuration's ``[settings]`` change meanwhile.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    reject_threshold: float
    mapping_batch_size: int
    event_batch_size: int
    tiktok_qps: float
    default_phone_region: str
    #: this execution only: a redrive or a new start without it is guarded again
    allow_mass_removal: bool = False

    @classmethod
    def resolve(
        cls,
        settings: Settings,
        template_region: str | None = None,
        *,
        allow_mass_removal: bool = False,
    ) -> RunOptions:
        """The options of a run: ``settings`` (environment, then the configuration's
        ``[settings]``), and the data template's own phone region over the default one."""
        return cls(
            reject_threshold=settings.reject_threshold,
            mapping_batch_size=settings.mapping_batch_size,
            event_batch_size=settings.event_batch_size,
            tiktok_qps=settings.tiktok_qps,
            default_phone_region=template_region or settings.default_phone_region,
            allow_mass_removal=allow_mass_removal,
        )


class Run(BaseModel):
    """The pointer payload every step receives as ``run`` (small: no rows, no secrets)."""

    model_config = ConfigDict(extra="forbid")

    run_id: str
    execution_id: str
    kind: Literal["custom_audience", "offline_events"]
    state_bucket: str
    source: Source
    destination: str
    data_template: str
    template: dict[str, Any]
    started_at: str
    options: RunOptions
    #: the target's lease as Preflight found it (``leases.LeaseOutcome`` plus the wait count)
    lease: dict[str, Any] | None = None

    @property
    def resolved(self) -> ResolvedTemplate:
        return ResolvedTemplate.from_dict(self.template)

    @property
    def paths(self) -> RunPaths:
        return RunPaths(self.run_id)


def run_id_for(source: Source, destination: str, data_template: str, salt: str = "") -> str:
    material = json.dumps(
        [source.bucket, source.key, source.etag, destination, data_template, salt]
    ).encode()
    return hashlib.sha256(material).hexdigest()[:16]
