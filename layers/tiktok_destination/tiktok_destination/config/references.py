"""Problems no single table shows: names that point to no table, fields that do not apply
to the destination's kind, columns a template never reads, and audience names TikTok
would show the same way. ``load_config`` reports them after the tables validate."""

from __future__ import annotations

from tiktok_destination.adapters.tiktok.names import (
    TIKTOK_NAME_LIMIT,
    TIKTOK_TRUNCATED_PREFIX,
    tiktok_visible_name,
)
from tiktok_destination.config.document import Config
from tiktok_destination.config.fields import DEFAULT_USER_ID_TYPES, _example, _known, _quote
from tiktok_destination.config.tables import DataTemplate, Destination
from tiktok_destination.identity.columns import EVENT_FIELDS

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
