"""The one configuration document: credentials, destinations, data templates, orchestrations.

The document is TOML (``local/tiktok_destination_local/samples/config.toml`` is an example),
validated by pydantic at the edge so that a wrong destination or template fails before any
call to TikTok: ``loader.load_config`` builds the :class:`Config` held here, whose
``resolve`` flattens one destination and data template into a ``ResolvedTemplate``. The
tables are in ``tables``, the rules of each field in ``fields``, the checks across tables
in ``references``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import Field, PrivateAttr
from pydantic_core import PydanticCustomError

from tiktok_destination.config.fields import (
    DEFAULT_USER_ID_TYPES,
    EVENT_USER_ID_TYPES,
    Name,
    _check_test_event_code,
    _id19,
    _known,
    _quote,
)
from tiktok_destination.config.resolved import (
    DEFAULT_EXPORT_MARKER,
    DEFAULT_EXPORT_QUIET_SECONDS,
    DEFAULT_MASS_REMOVAL_MIN_AUDIENCE,
    DEFAULT_MAX_REMOVAL_SHARE,
    ResolvedTemplate,
)
from tiktok_destination.config.tables import (
    Credential,
    DataTemplate,
    Destination,
    Orchestration,
    Settings,
    _Table,
)
from tiktok_destination.errors import ConfigurationError


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
