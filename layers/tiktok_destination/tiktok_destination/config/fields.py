"""What each field of the configuration document accepts: the value rules (pydantic
validators and the annotated types the tables use) and, per field, the hint and example
line a message gives.

A rule fails with a message that names the fix and never echoes the value written: a token
pasted into the wrong key must not end up in a log line or a workflow notification.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping
from typing import Annotated, Any

import phonenumbers
from pydantic import AfterValidator, BeforeValidator
from pydantic_core import PydanticCustomError

from tiktok_destination.adapters.tiktok.limits import MIN_QPS
from tiktok_destination.identity.columns import ALL_FIELDS
from tiktok_destination.identity.schema import ID_TYPES

DEFAULT_USER_ID_TYPES: tuple[str, ...] = ("EMAIL", "PHONE")
#: what an offline event carries in ``user`` (Events API 2.0: hashed email and phone)
EVENT_USER_ID_TYPES: tuple[str, ...] = ("EMAIL", "PHONE")

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


def _quote(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _known(table: Mapping[str, Any]) -> str:
    return ", ".join(sorted(table)) if table else "(none defined)"
