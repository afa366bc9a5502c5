"""The one configuration document: credentials, destinations, data templates, orchestrations.

The document is TOML (``local/tiktok_destination_local/samples/config.toml`` is an example),
validated by pydantic at the edge so that a wrong destination or template fails before any
call to TikTok. Every problem becomes one :class:`~tiktok_destination.errors.ConfigurationError`
whose message has one line per problem, each naming the source, the table and the field, and
saying the fix.

Messages never echo the value that was written: a token pasted into the wrong key must not
end up in a log line or a workflow notification.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeVar

import phonenumbers
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
)
from pydantic_core import ErrorDetails, PydanticCustomError

from tiktok_destination.adapters.tiktok.limits import (
    MAX_EVENTS_PER_REQUEST,
    MAX_MAPPING_IDS,
    MIN_QPS,
)
from tiktok_destination.adapters.tiktok.names import (
    TIKTOK_NAME_LIMIT,
    TIKTOK_TRUNCATED_PREFIX,
    tiktok_visible_name,
)
from tiktok_destination.errors import ConfigurationError
from tiktok_destination.identity.columns import ALL_FIELDS, EVENT_FIELDS

__all__ = [
    "ID_TYPES",
    "KINDS",
    "Config",
    "Credential",
    "DataTemplate",
    "Destination",
    "DestinationDefaults",
    "Orchestration",
    "ResolvedTemplate",
    "Settings",
    "load_config",
]

#: identifier types a custom audience can be built from (TikTok's ``*_SHA256`` id schemas)
ID_TYPES: tuple[str, ...] = ("EMAIL", "PHONE", "IDFA", "AAID")
DEFAULT_USER_ID_TYPES: tuple[str, ...] = ("EMAIL", "PHONE")
#: what an offline event carries in ``user`` (Events API 2.0: hashed email and phone)
EVENT_USER_ID_TYPES: tuple[str, ...] = ("EMAIL", "PHONE")
KINDS: tuple[str, ...] = ("custom_audience", "offline_events")
#: the removal guard: a custom audience run stops (MassRemovalBlocked) when the file would
#: remove more than this share of the members TikTok may hold ...
DEFAULT_MAX_REMOVAL_SHARE = 0.5
#: ... unless the audience has fewer members than this (small audiences churn in big shares)
DEFAULT_MASS_REMOVAL_MIN_AUDIENCE = 1_000
#: exports in parts: Spark / Glue / Hadoop / Databricks write this marker last
DEFAULT_EXPORT_MARKER = "_SUCCESS"
#: exports in parts without a marker or manifest start after this long with no new part
DEFAULT_EXPORT_QUIET_SECONDS = 60

# The names become S3 key segments (inbox/<destination>/<template>/) and parts of
# scheduler names, which allow only these characters; 64 is the Scheduler name limit.
_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_ID19_RE = re.compile(r"^[0-9]{19}$")
_RATE_RE = re.compile(r"^rate\((\d+) (minute|minutes|hour|hours|day|days)\)$")
_CRON_RE = re.compile(r"^cron\((.*)\)$")

_ERROR_TYPE = "config_value"

#: per field: what a valid value is, and an example line to copy
_HINTS: dict[str, tuple[str, str]] = {
    "settings": ("a table", "[settings]"),
    "credentials": ("tables named [credentials.NAME]", "[credentials.acme]"),
    "destinations": ("tables named [destinations.NAME]", "[destinations.acme_audiences]"),
    "data_templates": ("tables named [data_templates.NAME]", "[data_templates.vip_customers]"),
    "orchestrations": ("tables named [orchestrations.NAME]", "[orchestrations.nightly_vip]"),
    "description": ("free text", 'description = "Acme Ads, authorized by marketing-ops"'),
    "credential": ("the name of a [credentials.NAME] table", 'credential = "acme"'),
    "advertiser_id": (
        "exactly 19 digits as a quoted string",
        'advertiser_id = "7000000000000000001"',
    ),
    "kind": ('"custom_audience" or "offline_events"', 'kind = "custom_audience"'),
    "defaults": (
        "a table of defaults for this destination's data templates",
        "[destinations.NAME.defaults]",
    ),
    "destination": ("the name of a [destinations.NAME] table", 'destination = "acme_audiences"'),
    "data_template": (
        "the name of a [data_templates.NAME] table",
        'data_template = "vip_customers"',
    ),
    "audience_name": ("a quoted string of 1 to 400 characters", 'audience_name = "VIP customers"'),
    "user_id_types": (
        "a non-empty list of distinct values from " + ", ".join(ID_TYPES),
        'user_id_types = ["EMAIL", "PHONE"]',
    ),
    "event_set_id": (
        "exactly 19 digits as a quoted string",
        'event_set_id = "7100000000000000001"',
    ),
    "test_event_code": (
        "the test event code shown in TikTok Events Manager, as a quoted string",
        'test_event_code = "TEST12345"',
    ),
    "default_phone_region": (
        "a two-letter ISO 3166-1 alpha-2 region code",
        'default_phone_region = "US"',
    ),
    "source_prefix": (
        "a key prefix inside the inbox bucket (no bucket name, no leading /)",
        'source_prefix = "exports/vip/"',
    ),
    "schedule": (
        "an EventBridge Scheduler expression, cron(...) with 6 fields or rate(...)",
        'schedule = "cron(0 6 * * ? *)"',
    ),
    "reject_threshold": (
        "a number from 0 to 1, the share of rejected rows (or of one identifier column's "
        "invalid values) that stops a run",
        "reject_threshold = 0.2",
    ),
    "mapping_batch_size": (
        "an integer from 1 to 10000, rows per segment/mapping call",
        "mapping_batch_size = 10000",
    ),
    "event_batch_size": (
        "an integer from 1 to 1000, events per event/track call",
        "event_batch_size = 1000",
    ),
    "tiktok_qps": (
        f"a number of at least {MIN_QPS}, requests per second sent to TikTok",
        "tiktok_qps = 10",
    ),
    "columns": (
        "a table from field name to the file's header name",
        'columns = { email = "Email Address" }',
    ),
    "ignore_columns": (
        "a list of header names the run may leave unused",
        'ignore_columns = ["secondary_email"]',
    ),
    "max_removal_share": (
        "a number from 0 to 1, the largest share of an audience's members one file may "
        "remove (1 turns the guard off)",
        "max_removal_share = 0.5",
    ),
    "mass_removal_min_audience": (
        "a whole number from 0, the audience size below which the removal guard does not apply",
        "mass_removal_min_audience = 1000",
    ),
    "export_completion": (
        'how an export in parts is known to be complete: "auto", "marker", "manifest" or '
        '"quiet_period"',
        'export_completion = "marker"',
    ),
    "export_marker": (
        "the file name of the completion marker an export's writer leaves last",
        'export_marker = "_SUCCESS"',
    ),
    "export_quiet_seconds": (
        "a whole number of seconds from 1 to 3600 with no new part before an export starts",
        "export_quiet_seconds = 60",
    ),
    "headerless_columns": (
        "the columns of files written without a header line, in order (field names or "
        "names that columns maps)",
        'headerless_columns = ["email", "phone"]',
    ),
}

# Keys that mean someone is about to commit a secret to the file.
_SECRET_KEY_RE = re.compile(r"token|secret|password|app_key|api_key", re.IGNORECASE)


# ------------------------------------------------------------------ field validators
def _fail(message: str) -> PydanticCustomError:
    # The message is used verbatim; braces would be read as format fields.
    return PydanticCustomError(_ERROR_TYPE, message.replace("{", "(").replace("}", ")"))


def _fail_toml(message: str) -> PydanticCustomError:
    # Without a context pydantic leaves braces alone: inline-table examples stay copyable.
    return PydanticCustomError(_ERROR_TYPE, message)


def _example(field: str) -> str:
    return _HINTS[field][1]


def _id19(field: str) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if isinstance(value, int | float):  # bool is an int too
            raise _fail(
                f"is a number; quote it: ids are 19-digit strings, never numbers, "
                f"e.g. {_example(field)}"
            )
        if not isinstance(value, str):
            raise _fail(f"must be exactly 19 digits as a quoted string, e.g. {_example(field)}")
        if not _ID19_RE.fullmatch(value):
            raise _fail(
                f"must be exactly 19 digits as a quoted string, e.g. {_example(field)} "
                f"(this value has {len(value)} characters)"
            )
        return value

    return check


def _check_user_id_types(value: Any) -> Any:
    allowed = ", ".join(ID_TYPES)
    if isinstance(value, str):
        raise _fail(f"must be a list, not a single string, e.g. {_example('user_id_types')}")
    if not isinstance(value, list | tuple):
        raise _fail(f"must be a list of {allowed}, e.g. {_example('user_id_types')}")
    if not value:
        raise _fail(
            f"must name at least one identifier type from {allowed} (or leave the key out "
            f"to use EMAIL and PHONE)"
        )
    seen: list[str] = []
    for position, item in enumerate(value, start=1):
        if not isinstance(item, str):
            raise _fail(f"entry {position} must be a quoted string, one of {allowed}")
        upper = item.strip().upper()
        if upper == "GAID":
            raise _fail('entry "GAID": write "AAID" for Google/Android advertising ids')
        if upper not in ID_TYPES:
            raise _fail(f"entry {position} is not an identifier type; use values from {allowed}")
        if upper in seen:
            raise _fail(f"lists {upper} more than once; name each identifier type once")
        seen.append(upper)
    return tuple(seen)


def _check_columns(value: Any) -> Any:
    example = _example("columns")
    if not isinstance(value, dict):
        raise _fail_toml(f"must be a table from field name to header name, e.g. {example}")
    checked: dict[str, str] = {}
    seen: dict[str, str] = {}
    for target, column in value.items():
        if target not in ALL_FIELDS:
            close = difflib.get_close_matches(target, ALL_FIELDS, n=1)
            guess = f"did you mean {close[0]}? " if close else ""
            raise _fail_toml(
                f"{_quote(target)} is not a field; {guess}fields: {', '.join(ALL_FIELDS)}"
            )
        if not isinstance(column, str) or not column.strip():
            raise _fail_toml(
                f"{target} must be the file's header name as a non-empty quoted string, "
                f"e.g. {example}"
            )
        key = column.strip().lower()
        if key in seen:
            raise _fail_toml(
                f"{seen[key]} and {target} name the same column; one column feeds one field"
            )
        seen[key] = target
        checked[target] = column.strip()
    return checked


def _check_ignore_columns(value: Any) -> Any:
    example = _example("ignore_columns")
    if isinstance(value, str) or not isinstance(value, list):
        raise _fail_toml(f"must be a list of header names, e.g. {example}")
    for position, item in enumerate(value, start=1):
        if not isinstance(item, str) or not item.strip():
            raise _fail_toml(f"entry {position} must be a non-empty quoted string, e.g. {example}")
    return tuple(item.strip() for item in value)


def _check_export_marker(value: Any) -> Any:
    if isinstance(value, str) and (not value.strip() or "/" in value or value != value.strip()):
        raise _fail(
            "must be a file name (no /, no surrounding spaces), e.g. " + _example("export_marker")
        )
    return value


def _check_headerless_columns(value: Any) -> Any:
    example = _example("headerless_columns")
    if isinstance(value, str) or not isinstance(value, list) or not value:
        raise _fail_toml(f"must be a non-empty list of column names, e.g. {example}")
    seen: set[str] = set()
    for position, item in enumerate(value, start=1):
        if not isinstance(item, str) or not item.strip():
            raise _fail_toml(f"entry {position} must be a non-empty quoted string, e.g. {example}")
        name = item.strip().lower()
        if name in seen:
            raise _fail_toml(f"{_quote(item)} is listed twice; name each column once")
        seen.add(name)
    return tuple(item.strip().lower() for item in value)


def _check_phone_region(value: Any) -> Any:
    if not isinstance(value, str):
        raise _fail(
            f"must be a two-letter ISO 3166-1 alpha-2 region code as a quoted string, "
            f"e.g. {_example('default_phone_region')}"
        )
    region = value.strip().upper()
    if region == "UK":
        raise _fail('"UK" is not an ISO 3166-1 code; the United Kingdom is "GB"')
    if region not in phonenumbers.SUPPORTED_REGIONS:
        raise _fail(
            f"is not a two-letter ISO 3166-1 alpha-2 region code with a phone numbering "
            f"plan; use e.g. {_example('default_phone_region')}"
        )
    return region


def _check_audience_name(value: Any) -> Any:
    if isinstance(value, str):
        if not value.strip():
            raise _fail(f"must not be blank, e.g. {_example('audience_name')}")
        if len(value) > 400:
            raise _fail(f"has {len(value)} characters; TikTok allows at most 400")
    return value


def _check_test_event_code(value: Any) -> Any:
    if isinstance(value, str) and (
        not value or len(value) > 100 or value != "".join(value.split())
    ):
        raise _fail(
            f"must be 1 to 100 characters without spaces, as shown in TikTok Events Manager, "
            f"e.g. {_example('test_event_code')}"
        )
    return value


def _check_source_prefix(value: Any) -> Any:
    if isinstance(value, str):
        if not value.strip():
            raise _fail(
                "must not be empty: an empty prefix would pick the newest object of the "
                f"whole bucket; e.g. {_example('source_prefix')}"
            )
        if value.lower().startswith("s3://"):
            raise _fail(
                "is a key prefix inside the inbox bucket, not a URL: drop the "
                f'"s3://bucket/" part, e.g. {_example("source_prefix")}'
            )
        if value.startswith("/"):
            raise _fail(
                f"must not start with /: S3 keys have no leading slash, "
                f"e.g. {_example('source_prefix')}"
            )
        if len(value.encode("utf-8")) > 1024:
            raise _fail("is longer than an S3 key can be (1024 bytes)")
    return value


def _check_schedule(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    example = _example("schedule")
    rate = _RATE_RE.fullmatch(value)
    if rate:
        amount, unit = int(rate.group(1)), rate.group(2)
        if amount < 1:
            raise _fail("rate(...) needs a value of at least 1, e.g. rate(1 day)")
        if (amount == 1) != (not unit.endswith("s")):
            raise _fail(
                "rate(...) takes a singular unit for 1 and a plural unit otherwise, "
                "e.g. rate(1 day) or rate(12 hours)"
            )
        return value
    cron = _CRON_RE.fullmatch(value)
    if cron:
        fields = cron.group(1).split()
        if len(fields) != 6:
            raise _fail(
                f"an EventBridge cron(...) has 6 fields (minutes hours day-of-month month "
                f"day-of-week year), this one has {len(fields)}; e.g. {example}"
            )
        if (fields[2] == "?") == (fields[4] == "?"):
            raise _fail(
                "in cron(...) exactly one of day-of-month (3rd field) and day-of-week "
                f"(5th field) must be ?; e.g. {example}"
            )
        return value
    if value.startswith("rate("):
        raise _fail(
            "rate(...) must be a whole number and minute(s), hour(s) or day(s), "
            "e.g. rate(1 day) or rate(12 hours)"
        )
    raise _fail(
        f"must be cron(...) or rate(...) as EventBridge Scheduler writes them, e.g. {example}"
    )


def _check_name(value: str) -> str:
    if not _NAME_RE.fullmatch(value):
        raise _fail(
            "table names may use only letters, digits, _ and - (at most 64 characters), "
            "e.g. [destinations.acme_audiences]"
        )
    return value


Name = Annotated[str, AfterValidator(_check_name)]
AdvertiserId = Annotated[str, BeforeValidator(_id19("advertiser_id"))]
EventSetId = Annotated[str, BeforeValidator(_id19("event_set_id"))]
UserIdTypes = Annotated[tuple[str, ...], BeforeValidator(_check_user_id_types)]
PhoneRegion = Annotated[str, BeforeValidator(_check_phone_region)]
AudienceName = Annotated[str, BeforeValidator(_check_audience_name)]
TestEventCode = Annotated[str, BeforeValidator(_check_test_event_code)]
SourcePrefix = Annotated[str, BeforeValidator(_check_source_prefix)]
Schedule = Annotated[str, BeforeValidator(_check_schedule)]
ColumnMap = Annotated[dict[str, str], BeforeValidator(_check_columns)]
ExportMarker = Annotated[str, BeforeValidator(_check_export_marker)]
HeaderlessColumns = Annotated[tuple[str, ...], BeforeValidator(_check_headerless_columns)]
IgnoreColumns = Annotated[tuple[str, ...], BeforeValidator(_check_ignore_columns)]


# ------------------------------------------------------------------ models
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


@dataclass(frozen=True)
class ResolvedTemplate:
    """Everything one run needs from the configuration, flattened and JSON-friendly."""

    destination: str
    data_template: str
    credential: str
    advertiser_id: str
    kind: str
    audience_name: str | None
    user_id_types: tuple[str, ...]
    #: orchestration input > data template > destination defaults; a row-level
    #: event_set_id column is handled later by validate
    event_set_id: str | None
    #: "orchestration input" | "data template" | "destination defaults" | None
    event_set_id_source: str | None
    test_event_code: str | None
    default_phone_region: str | None
    #: field -> header name, from the data template's ``columns``
    columns: dict[str, str] = dataclasses.field(default_factory=dict)
    ignore_columns: tuple[str, ...] = ()
    #: the removal guard (custom audiences): data template > destination defaults >
    #: [settings] > the built-in default. Defaults here so that a run payload written before
    #: the guard existed still loads.
    max_removal_share: float = DEFAULT_MAX_REMOVAL_SHARE
    mass_removal_min_audience: int = DEFAULT_MASS_REMOVAL_MIN_AUDIENCE
    #: exports in parts (see exports.py); defaults so that older run payloads still load
    export_completion: str = "auto"
    export_marker: str = DEFAULT_EXPORT_MARKER
    export_quiet_seconds: int = DEFAULT_EXPORT_QUIET_SECONDS
    #: the file's columns when it has no header line; empty: the first line is the header
    headerless_columns: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["user_id_types"] = list(self.user_id_types)
        data["ignore_columns"] = list(self.ignore_columns)
        data["headerless_columns"] = list(self.headerless_columns)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ResolvedTemplate:
        fields = dataclasses.fields(cls)
        names = [f.name for f in fields]
        required = [
            f.name
            for f in fields
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        ]
        missing = [n for n in required if n not in data]
        unknown = sorted(k for k in data if k not in names)
        if missing or unknown:
            raise ConfigurationError(
                "resolved template: "
                + "; ".join(
                    ([f"missing keys: {', '.join(missing)}"] if missing else [])
                    + ([f"unknown keys: {', '.join(unknown)}"] if unknown else [])
                )
                + "; pass the dictionary produced by ResolvedTemplate.as_dict() unchanged"
            )
        values = {n: data[n] for n in names if n in data}
        types = values["user_id_types"]
        if isinstance(types, str) or not isinstance(types, Sequence):
            raise ConfigurationError(
                "resolved template: user_id_types must be a list of identifier types; "
                "pass the dictionary produced by ResolvedTemplate.as_dict() unchanged"
            )
        values["user_id_types"] = tuple(types)
        columns = values.get("columns", {})
        ignore = values.get("ignore_columns", ())
        if (
            not isinstance(columns, Mapping)
            or not all(isinstance(k, str) and isinstance(v, str) for k, v in columns.items())
            or isinstance(ignore, str)
            or not isinstance(ignore, Sequence)
        ):
            raise ConfigurationError(
                "resolved template: columns must map field names to header names and "
                "ignore_columns must be a list; pass the dictionary produced by "
                "ResolvedTemplate.as_dict() unchanged"
            )
        values["columns"] = dict(columns)
        values["ignore_columns"] = tuple(str(name) for name in ignore)
        values["headerless_columns"] = tuple(
            str(name) for name in values.get("headerless_columns") or ()
        )
        return cls(**values)


class Config(_Table):
    """The whole document. Build it with :func:`load_config`, which also checks references."""

    settings: Settings = Settings()
    credentials: dict[Name, Credential] = Field(default_factory=dict)
    destinations: dict[Name, Destination] = Field(default_factory=dict)
    data_templates: dict[Name, DataTemplate] = Field(default_factory=dict)
    orchestrations: dict[Name, Orchestration] = Field(default_factory=dict)

    _source: str = PrivateAttr(default="config.toml")

    @property
    def source(self) -> str:
        return self._source

    def resolve(
        self,
        destination: str,
        data_template: str,
        *,
        event_set_id: str | None = None,
        test_event_code: str | None = None,
    ) -> ResolvedTemplate:
        """Flatten one destination + data template (+ orchestration input overrides).

        A missing event set id is not an error here: the file may carry an
        ``event_set_id`` column, which validate checks row by row.
        """
        src = self._source
        dest = self.destinations.get(destination)
        if dest is None:
            raise ConfigurationError(
                f"{src}: [destinations] there is no destination {_quote(destination)}; "
                f"known destinations: {_known(self.destinations)}. Fix the name in the "
                f"orchestration input or S3 key, or add a [destinations.{destination}] table"
            )
        template = self.data_templates.get(data_template)
        if template is None:
            raise ConfigurationError(
                f"{src}: [data_templates] there is no data template {_quote(data_template)}; "
                f"known data templates: {_known(self.data_templates)}. Fix the name in the "
                f"orchestration input or S3 key, or add a [data_templates.{data_template}] table"
            )
        if template.destination != destination:
            mine = sorted(n for n, t in self.data_templates.items() if t.destination == destination)
            raise ConfigurationError(
                f"{src}: [data_templates.{data_template}] destination: this data template "
                f"belongs to destination {_quote(template.destination)}, not "
                f"{_quote(destination)}; use destination {_quote(template.destination)}, or "
                f"one of the data templates of {_quote(destination)}: "
                f"{', '.join(mine) if mine else '(none)'}"
            )

        if event_set_id is not None:
            _check_input(event_set_id, _id19("event_set_id"), "event_set_id")
        if test_event_code is not None:
            _check_input(test_event_code, _check_test_event_code, "test_event_code")
        if dest.kind == "custom_audience":
            for name, given in (
                ("event_set_id", event_set_id),
                ("test_event_code", test_event_code),
            ):
                if given is not None:
                    raise ConfigurationError(
                        f"orchestration input: {name}: does not apply to destination "
                        f'{_quote(destination)} (kind = "custom_audience"); remove it'
                    )

        defaults = dest.defaults
        resolved_event_set_id: str | None = None
        source: str | None = None
        for candidate, origin in (
            (event_set_id, "orchestration input"),
            (template.event_set_id, "data template"),
            (defaults.event_set_id, "destination defaults"),
        ):
            if candidate is not None:
                resolved_event_set_id, source = candidate, origin
                break

        if dest.kind == "custom_audience":
            user_id_types = (
                template.user_id_types or defaults.user_id_types or DEFAULT_USER_ID_TYPES
            )
        else:
            user_id_types = EVENT_USER_ID_TYPES

        return ResolvedTemplate(
            destination=destination,
            data_template=data_template,
            credential=dest.credential,
            advertiser_id=dest.advertiser_id,
            kind=dest.kind,
            audience_name=template.audience_name,
            user_id_types=tuple(user_id_types),
            event_set_id=resolved_event_set_id,
            event_set_id_source=source,
            test_event_code=_first(
                test_event_code, template.test_event_code, defaults.test_event_code
            ),
            default_phone_region=_first(
                template.default_phone_region,
                defaults.default_phone_region,
                self.settings.default_phone_region,
            ),
            columns=dict(template.columns or {}),
            ignore_columns=tuple(template.ignore_columns or ()),
            max_removal_share=_first_or(
                DEFAULT_MAX_REMOVAL_SHARE,
                template.max_removal_share,
                defaults.max_removal_share,
                self.settings.max_removal_share,
            ),
            mass_removal_min_audience=_first_or(
                DEFAULT_MASS_REMOVAL_MIN_AUDIENCE,
                template.mass_removal_min_audience,
                defaults.mass_removal_min_audience,
                self.settings.mass_removal_min_audience,
            ),
            export_completion=template.export_completion or "auto",
            export_marker=template.export_marker or DEFAULT_EXPORT_MARKER,
            export_quiet_seconds=template.export_quiet_seconds or DEFAULT_EXPORT_QUIET_SECONDS,
            headerless_columns=tuple(template.headerless_columns or ()),
        )


# ------------------------------------------------------------------ loading
def load_config(text: str | bytes, *, source: str = "config.toml") -> Config:
    """Parse and validate the TOML document; raise one ConfigurationError listing every problem."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigurationError(
                f"{source}: is not UTF-8 text (byte {exc.start}); save the file as UTF-8"
            ) from None
    # Editors on Windows like to prepend a byte order mark, which TOML does not allow.
    text = text.removeprefix("\ufeff")
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(
            f"{source}: is not valid TOML: {exc}; fix the syntax there "
            f"(strings need quotes, each table header once)"
        ) from None

    try:
        config = Config.model_validate(raw)
    except ValidationError as exc:
        lines = [_format_error(source, raw, err) for err in exc.errors()]
        raise ConfigurationError("\n".join(dict.fromkeys(lines))) from None

    problems = _reference_problems(config, source)
    if problems:
        raise ConfigurationError("\n".join(problems))
    config._source = source
    return config


# Custom audiences only: offline events add, they never remove.
_REMOVAL_GUARD_FIELDS = ("max_removal_share", "mass_removal_min_audience")


def _reference_problems(config: Config, src: str) -> list[str]:
    problems: list[str] = []

    def not_applicable(table: str, field: str, kind: str) -> None:
        problems.append(
            f'{src}: [{table}] {field}: does not apply to kind = "{kind}" destinations; remove it'
        )

    for name, dest in config.destinations.items():
        table = f"destinations.{name}"
        if dest.credential not in config.credentials:
            problems.append(
                f"{src}: [{table}] credential: names {_quote(dest.credential)}, but there is "
                f"no [credentials.{dest.credential}] table; add it or use one of: "
                f"{_known(config.credentials)}"
            )
        d = dest.defaults
        if dest.kind == "offline_events":
            for field in ("user_id_types", *_REMOVAL_GUARD_FIELDS):
                if getattr(d, field) is not None:
                    not_applicable(f"{table}.defaults", field, dest.kind)
        else:
            if d.event_set_id is not None:
                not_applicable(f"{table}.defaults", "event_set_id", dest.kind)
            if d.test_event_code is not None:
                not_applicable(f"{table}.defaults", "test_event_code", dest.kind)

    for name, template in config.data_templates.items():
        table = f"data_templates.{name}"
        tdest = config.destinations.get(template.destination)
        if tdest is None:
            problems.append(
                f"{src}: [{table}] destination: names {_quote(template.destination)}, but "
                f"there is no [destinations.{template.destination}] table; add it or use one "
                f"of: {_known(config.destinations)}"
            )
            continue
        problems.extend(_column_problems(src, table, template, tdest))
        if tdest.kind == "custom_audience":
            if template.audience_name is None:
                problems.append(
                    f"{src}: [{table}] audience_name: is required for custom_audience "
                    f"destinations; add it, e.g. {_example('audience_name')}"
                )
            for field in ("event_set_id", "test_event_code"):
                if getattr(template, field) is not None:
                    not_applicable(table, field, tdest.kind)
        else:
            for field in ("audience_name", "user_id_types", *_REMOVAL_GUARD_FIELDS):
                if getattr(template, field) is not None:
                    not_applicable(table, field, tdest.kind)

    problems.extend(_audience_name_collisions(config, src))

    for name, orch in config.orchestrations.items():
        table = f"orchestrations.{name}"
        odest = config.destinations.get(orch.destination)
        otemplate = config.data_templates.get(orch.data_template)
        if odest is None:
            problems.append(
                f"{src}: [{table}] destination: names {_quote(orch.destination)}, but there "
                f"is no [destinations.{orch.destination}] table; add it or use one of: "
                f"{_known(config.destinations)}"
            )
        if otemplate is None:
            problems.append(
                f"{src}: [{table}] data_template: names {_quote(orch.data_template)}, but "
                f"there is no [data_templates.{orch.data_template}] table; add it or use one "
                f"of: {_known(config.data_templates)}"
            )
        elif otemplate.destination != orch.destination:
            problems.append(
                f"{src}: [{table}] data_template: {_quote(orch.data_template)} belongs to "
                f"destination {_quote(otemplate.destination)}, not {_quote(orch.destination)}; "
                f"make the two agree"
            )
        if odest is not None and odest.kind == "custom_audience" and orch.event_set_id:
            not_applicable(table, "event_set_id", odest.kind)
    return problems


def _audience_name_collisions(config: Config, src: str) -> list[str]:
    """Templates of one advertiser whose audience names TikTok shows the same way.

    Lookup by name matches on the visible name, so two such templates would write one
    audience and each would diff against a snapshot the other keeps overwriting.
    """
    by_visible: dict[tuple[str, str], list[str]] = {}
    for name, template in config.data_templates.items():
        dest = config.destinations.get(template.destination)
        if dest is None or dest.kind != "custom_audience" or template.audience_name is None:
            continue
        visible = tiktok_visible_name(template.audience_name)
        by_visible.setdefault((dest.advertiser_id, visible), []).append(name)

    problems: list[str] = []
    for (advertiser_id, _), names in by_visible.items():
        if len(names) < 2:
            continue
        labels = [f"[data_templates.{n}]" for n in names]
        tables = ", ".join(labels[:-1]) + " and " + labels[-1]
        full_names = {config.data_templates[n].audience_name for n in names}
        # The names are not quoted: messages never echo a value from the document.
        why = (
            "have the same audience_name"
            if len(full_names) == 1
            else (
                f"have audience_name values that differ only after character "
                f"{TIKTOK_TRUNCATED_PREFIX}, and TikTok shows a name over "
                f'{TIKTOK_NAME_LIMIT} characters as its first {TIKTOK_TRUNCATED_PREFIX} plus "..."'
            )
        )
        problems.append(
            f"{src}: {tables} audience_name: these data templates {why}, so on advertiser "
            f"{advertiser_id} they would write one TikTok audience; give each a name that "
            f"differs within its first {TIKTOK_TRUNCATED_PREFIX} characters (or keep names at "
            f"most {TIKTOK_NAME_LIMIT} characters long)"
        )
    return problems


def _column_problems(src: str, table: str, template: DataTemplate, dest: Destination) -> list[str]:
    """Mapped fields the template never reads, and columns both mapped and ignored."""
    problems: list[str] = []
    if dest.kind == "custom_audience":
        types = template.user_id_types or dest.defaults.user_id_types or DEFAULT_USER_ID_TYPES
        readable = tuple(t.lower() for t in types)
        why = "the identifier types in user_id_types"
    else:
        readable = EVENT_FIELDS
        why = "offline event fields"
    for target in template.columns or {}:
        if target not in readable:
            problems.append(
                f"{src}: [{table}] columns.{target}: this data template never reads "
                f"{target} (it reads {why}: {', '.join(readable)}); remove it"
                + (" or add it to user_id_types" if dest.kind == "custom_audience" else "")
            )
    mapped = {c.lower(): t for t, c in (template.columns or {}).items()}
    for name in template.ignore_columns or ():
        if name.lower() in mapped:
            problems.append(
                f"{src}: [{table}] ignore_columns: {_quote(name)} is also mapped to "
                f"{mapped[name.lower()]} in columns; keep one of the two"
            )
    return problems


# ------------------------------------------------------------------ error formatting
_CONTAINERS = ("credentials", "destinations", "data_templates", "orchestrations")


def _model_for(table: tuple[str, ...]) -> type[BaseModel] | None:
    if not table:
        return Config
    if table == ("settings",):
        return Settings
    if len(table) == 2:
        by_container: dict[str, type[BaseModel]] = {
            "credentials": Credential,
            "destinations": Destination,
            "data_templates": DataTemplate,
            "orchestrations": Orchestration,
        }
        return by_container.get(table[0])
    if len(table) == 3 and table[0] == "destinations" and table[2] == "defaults":
        return DestinationDefaults
    return None


def _split_loc(raw: Any, loc: tuple[int | str, ...]) -> tuple[tuple[str, ...], tuple[Any, ...]]:
    """Split an error location into the TOML table it sits in and the key inside it."""
    table: list[str] = []
    node = raw
    for i, part in enumerate(loc):
        if isinstance(node, dict) and isinstance(part, str) and isinstance(node.get(part), dict):
            if i == len(loc) - 1:
                break  # the error is about this sub-table as a whole: report it as a key
            table.append(part)
            node = node[part]
        else:
            break
    return tuple(table), loc[len(table) :]


def _table_label(table: Sequence[str]) -> str:
    if not table:
        return "top level"
    return "[" + ".".join(p if _NAME_RE.fullmatch(p) else _quote(p) for p in table) + "]"


def _field_label(rest: Sequence[Any]) -> str:
    out = ""
    for part in rest:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _format_error(src: str, raw: Any, err: ErrorDetails) -> str:
    loc = tuple(err["loc"])
    if loc and loc[-1] == "[key]":
        table = tuple(str(p) for p in loc[:-2])
        return f"{src}: {_table_label(table)} table name {_quote(str(loc[-2]))}: {err['msg']}"

    table, rest = _split_loc(raw, loc)
    where = f"{src}: {_table_label(table)} {_field_label(rest) or '(table)'}"
    field = rest[0] if rest and isinstance(rest[0], str) else ""
    kind = err["type"]

    if kind == _ERROR_TYPE:
        return f"{where}: {err['msg']}"
    if kind == "extra_forbidden":
        return f"{where}: {_unknown_key(table, field)}"
    if len(table) == 1 and table[0] in _CONTAINERS and len(rest) == 1:
        # e.g. `destinations.acme = 5`: a name in a container must be a table
        return (
            f"{where}: must be a table; write [{table[0]}.{field}] on its own line "
            f"followed by its keys"
        )
    hint = _HINTS.get(field)
    if kind == "missing":
        example = f", e.g. {hint[1]}" if hint else ""
        return f"{where}: is required; add it{example}"
    message = err["msg"]
    message = message[:1].lower() + message[1:]
    if hint:
        return f"{where}: {message}; must be {hint[0]}, e.g. {hint[1]}"
    return f"{where}: {message}"


def _unknown_key(table: tuple[str, ...], key: str) -> str:
    if table[:1] == ("credentials",) and _SECRET_KEY_RE.search(key):
        return (
            "unknown key; tokens and secrets never go in this file: store the token in "
            "Secrets Manager (run the authorization flow for this credential) and remove "
            "this key"
        )
    model = _model_for(table)
    if model is None:
        return "unknown key; remove it"
    allowed = list(model.model_fields)
    close = difflib.get_close_matches(key, allowed, n=1)
    guess = f"did you mean {close[0]}? " if close else ""
    noun = "table" if not table else "key"
    return f"unknown {noun}; {guess}allowed here: {', '.join(allowed)}"


# ------------------------------------------------------------------ small helpers
def _check_input(value: Any, check: Callable[[Any], Any], field: str) -> None:
    try:
        check(value)
    except PydanticCustomError as exc:
        message = exc.message().replace(f"{field} = ", f'"{field}": ')
        raise ConfigurationError(f"orchestration input: {field}: {message}") from None
    if not isinstance(value, str):
        raise ConfigurationError(f"orchestration input: {field}: must be a string")


_T = TypeVar("_T")


def _first(*values: _T | None) -> _T | None:
    return next((v for v in values if v is not None), None)


def _first_or(default: _T, *values: _T | None) -> _T:
    found = _first(*values)
    return default if found is None else found


def _quote(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _known(table: Mapping[str, Any]) -> str:
    return ", ".join(sorted(table)) if table else "(none defined)"
