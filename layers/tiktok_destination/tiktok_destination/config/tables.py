"""The tables of the configuration document as pydantic models: ``[settings]``,
``[credentials.NAME]``, ``[destinations.NAME]`` (and its ``defaults``),
``[data_templates.NAME]`` and ``[orchestrations.NAME]``."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from tiktok_destination.adapters.tiktok.limits import (
    MAX_EVENTS_PER_REQUEST,
    MAX_MAPPING_IDS,
    MIN_QPS,
)
from tiktok_destination.config.fields import (
    AdvertiserId,
    AudienceName,
    ColumnMap,
    EventSetId,
    ExportMarker,
    HeaderlessColumns,
    IgnoreColumns,
    PhoneRegion,
    Schedule,
    SourcePrefix,
    TestEventCode,
    UserIdTypes,
)


class _Table(BaseModel):
    # strict: a TOML value has a type; "10000" for a batch size is a mistake, not a number.
    # extra="forbid": a misspelt key must fail, not be silently ignored.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Settings(_Table):
    """Run settings. ``None`` means "use the environment default" (template parameters)."""

    default_phone_region: PhoneRegion | None = None
    reject_threshold: float | None = Field(default=None, ge=0, le=1)
    mapping_batch_size: int | None = Field(default=None, ge=1, le=MAX_MAPPING_IDS)
    event_batch_size: int | None = Field(default=None, ge=1, le=MAX_EVENTS_PER_REQUEST)
    tiktok_qps: float | None = Field(default=None, ge=MIN_QPS, allow_inf_nan=False)
    max_removal_share: float | None = Field(default=None, ge=0, le=1)
    mass_removal_min_audience: int | None = Field(default=None, ge=0)


class Credential(_Table):
    """A named TikTok authorization. The token itself lives in Secrets Manager."""

    description: str | None = None


class DestinationDefaults(_Table):
    """Defaults for every data template of one destination."""

    user_id_types: UserIdTypes | None = None
    default_phone_region: PhoneRegion | None = None
    event_set_id: EventSetId | None = None
    test_event_code: TestEventCode | None = None
    max_removal_share: float | None = Field(default=None, ge=0, le=1)
    mass_removal_min_audience: int | None = Field(default=None, ge=0)


class Destination(_Table):
    """One TikTok advertiser account reached through one credential."""

    credential: str
    advertiser_id: AdvertiserId
    kind: Literal["custom_audience", "offline_events"]
    defaults: DestinationDefaults = DestinationDefaults()


class DataTemplate(_Table):
    """What one kind of file means for one destination."""

    destination: str
    audience_name: AudienceName | None = None
    user_id_types: UserIdTypes | None = None
    event_set_id: EventSetId | None = None
    test_event_code: TestEventCode | None = None
    default_phone_region: PhoneRegion | None = None
    #: our field name -> the file's header name (see columns.py for the resolution rule)
    columns: ColumnMap | None = None
    #: header columns the run may leave unused although they look like identifiers
    ignore_columns: IgnoreColumns | None = None
    max_removal_share: float | None = Field(default=None, ge=0, le=1)
    mass_removal_min_audience: int | None = Field(default=None, ge=0)
    #: how an export in parts (a folder under the template's inbox folder) is known to be
    #: complete (see exports.py)
    export_completion: Literal["auto", "marker", "manifest", "quiet_period"] | None = None
    export_marker: ExportMarker | None = None
    export_quiet_seconds: int | None = Field(default=None, ge=1, le=3600)
    #: the files have no header line: these are their columns, in order
    headerless_columns: HeaderlessColumns | None = None


class Orchestration(_Table):
    """A scheduled start: send the newest object under ``source_prefix``."""

    destination: str
    data_template: str
    source_prefix: SourcePrefix
    schedule: Schedule
    event_set_id: EventSetId | None = None
