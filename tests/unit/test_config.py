"""The configuration document: the sample loads, every mistake names table + field + fix."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest

from tiktok_destination.config.document import Config
from tiktok_destination.config.loader import load_config
from tiktok_destination.config.resolved import ResolvedTemplate
from tiktok_destination.config.tables import (
    DataTemplate,
    Destination,
    DestinationDefaults,
    Orchestration,
    Settings,
)
from tiktok_destination.errors import ConfigurationError

SAMPLE = Path(__file__).resolve().parents[2] / "local/tiktok_destination_local/samples/config.toml"

ADV = "7000000000000000001"
ESET = "7100000000000000001"

BASE = f"""
[credentials.acme]

[destinations.aud]
credential = "acme"
advertiser_id = "{ADV}"
kind = "custom_audience"

[destinations.evt]
credential = "acme"
advertiser_id = "{ADV}"
kind = "offline_events"

[data_templates.vip]
destination = "aud"
audience_name = "VIP customers"

[data_templates.sales]
destination = "evt"
"""


def error_of(text: str | bytes, source: str = "config.toml") -> str:
    with pytest.raises(ConfigurationError) as info:
        load_config(text, source=source)
    return info.value.message


def only_line(message: str) -> str:
    lines = message.splitlines()
    assert len(lines) == 1, message
    return lines[0]


# ------------------------------------------------------------------ the sample
def test_sample_loads_and_resolves_both_kinds() -> None:
    config = load_config(SAMPLE.read_bytes(), source="samples/config.toml")
    assert config.source == "samples/config.toml"
    assert config.settings == Settings(
        default_phone_region="US",
        reject_threshold=0.2,
        mapping_batch_size=10000,
        event_batch_size=1000,
        tiktok_qps=10,
    )

    audience = config.resolve("acme_audiences", "vip_customers")
    assert audience.kind == "custom_audience"
    assert audience.credential == "acme"
    assert audience.advertiser_id == ADV
    assert isinstance(audience.advertiser_id, str)
    assert audience.audience_name == "VIP customers"
    assert audience.user_id_types == ("EMAIL", "PHONE")
    assert audience.event_set_id is None
    assert audience.event_set_id_source is None

    events = config.resolve("acme_offline", "store_purchases")
    assert events.kind == "offline_events"
    assert events.event_set_id == ESET
    assert events.event_set_id_source == "data template"
    assert events.test_event_code == "TEST12345"
    assert events.default_phone_region == "GB"
    assert events.audience_name is None

    orchestration = config.orchestrations["nightly_vip"]
    assert orchestration.destination == "acme_audiences"
    assert orchestration.data_template == "vip_customers"
    assert orchestration.schedule == "cron(0 6 * * ? *)"


def test_sample_documents_every_field() -> None:
    text = SAMPLE.read_text()
    models = (Settings, Destination, DestinationDefaults, DataTemplate, Orchestration, Config)
    for model in models:
        for field in model.model_fields:
            assert re.search(rf"\b{field}\b", text), f"samples/config.toml does not mention {field}"
    assert "description" in text


def test_empty_document_is_a_valid_empty_configuration() -> None:
    config = load_config("")
    assert config.destinations == {}
    assert config.settings == Settings()


def test_config_tables_are_read_only() -> None:
    config = load_config(BASE)
    with pytest.raises(ValueError):
        config.destinations["aud"].advertiser_id = "7000000000000000002"


# ------------------------------------------------------------------ identifiers
def test_int_advertiser_id_is_rejected_with_quote_it() -> None:
    text = BASE.replace(f'advertiser_id = "{ADV}"', f"advertiser_id = {ADV}", 1)
    line = only_line(error_of(text))
    assert line.startswith("config.toml: [destinations.aud] advertiser_id: ")
    assert "quote it" in line
    assert f'advertiser_id = "{ADV}"' in line


def test_18_digit_advertiser_id_is_rejected() -> None:
    text = BASE.replace(f'advertiser_id = "{ADV}"', 'advertiser_id = "700000000000000000"', 1)
    line = only_line(error_of(text))
    assert line == (
        "config.toml: [destinations.aud] advertiser_id: must be exactly 19 digits as a quoted "
        f'string, e.g. advertiser_id = "{ADV}" (this value has 18 characters)'
    )


def test_advertiser_id_with_non_digits_is_rejected() -> None:
    text = BASE.replace(f'advertiser_id = "{ADV}"', 'advertiser_id = "70000000000000000x1"', 1)
    assert "[destinations.aud] advertiser_id: must be exactly 19 digits" in error_of(text)


def test_bad_event_set_id_in_template_names_table_and_field() -> None:
    text = BASE + 'event_set_id = "71"\n'
    line = only_line(error_of(text))
    assert line.startswith("config.toml: [data_templates.sales] event_set_id: must be exactly 19")
    assert f'event_set_id = "{ESET}"' in line


def test_error_message_never_echoes_the_value() -> None:
    secretish = "sk_live_0123456789abcdef"
    text = BASE.replace(f'advertiser_id = "{ADV}"', f'advertiser_id = "{secretish}"', 1)
    text = text.replace("[credentials.acme]", f'[credentials.acme]\naccess_token = "{secretish}"')
    message = error_of(text)
    assert secretish not in message
    assert "[credentials.acme] access_token: unknown key; tokens and secrets never go" in message
    assert "Secrets Manager" in message


# ------------------------------------------------------------------ unknown keys and types
@pytest.mark.parametrize(
    ("insert_after", "line", "expected"),
    [
        (
            "[destinations.aud]",
            "advertizer = 1",
            "config.toml: [destinations.aud] advertizer: unknown key; did you mean",
        ),
        (
            "[data_templates.vip]",
            'audiance_name = "x"',
            "config.toml: [data_templates.vip] audiance_name: unknown key; did you mean "
            "audience_name?",
        ),
        ("[credentials.acme]", 'note = "x"', "config.toml: [credentials.acme] note: unknown key"),
    ],
)
def test_unknown_key_is_rejected(insert_after: str, line: str, expected: str) -> None:
    text = BASE.replace(insert_after, f"{insert_after}\n{line}", 1)
    assert only_line(error_of(text)).startswith(expected)


def test_unknown_top_level_table_suggests_the_right_one() -> None:
    line = only_line(error_of(BASE + "\n[orchestration.x]\nschedule = 'rate(1 day)'\n"))
    assert line.startswith("config.toml: top level orchestration: unknown table")
    assert "did you mean orchestrations?" in line


def test_unknown_key_in_settings_and_defaults() -> None:
    text = BASE + "\n[settings]\nqps = 5\n[destinations.aud.defaults]\nregion = 'US'\n"
    lines = error_of(text).splitlines()
    assert any(ln.startswith("config.toml: [settings] qps: unknown key") for ln in lines)
    assert any(
        ln.startswith("config.toml: [destinations.aud.defaults] region: unknown key")
        for ln in lines
    )


def test_all_schema_errors_are_collected_one_line_each() -> None:
    text = (
        BASE.replace('kind = "custom_audience"', 'kind = "audience"')
        + '\n[settings]\nmapping_batch_size = "10000"\nevent_batch_size = 5000\n'
    )
    lines = error_of(text, source="s3://config/config.toml").splitlines()
    assert len(lines) == 3
    assert all(ln.startswith("s3://config/config.toml: [") for ln in lines)
    joined = "\n".join(lines)
    assert "[destinations.aud] kind: input should be 'custom_audience' or" in joined
    assert "[settings] mapping_batch_size: input should be a valid integer" in joined
    assert "e.g. mapping_batch_size = 10000" in joined
    assert "[settings] event_batch_size: input should be less than or equal to 1000" in joined


def test_missing_required_field_says_what_to_add() -> None:
    text = BASE.replace('credential = "acme"\n', "", 1)
    line = only_line(error_of(text))
    assert line == (
        'config.toml: [destinations.aud] credential: is required; add it, e.g. credential = "acme"'
    )


def test_table_name_characters() -> None:
    line = only_line(error_of(BASE + '\n[credentials."acme ads"]\n'))
    assert line.startswith('config.toml: [credentials] table name "acme ads": ')
    assert "letters, digits, _ and -" in line
    load_config(BASE + "\n[credentials.Acme-Ads_2]\n")


def test_a_name_that_is_not_a_table() -> None:
    line = only_line(error_of(BASE.replace("[credentials.acme]", "[credentials]\nacme = 'tok'")))
    assert line.startswith("config.toml: [credentials] acme: must be a table")
    assert "tok" not in line


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ("reject_threshold = 1.5", "reject_threshold"),
        ("reject_threshold = true", "reject_threshold"),
        ("mapping_batch_size = 0", "mapping_batch_size"),
        ("mapping_batch_size = 10001", "mapping_batch_size"),
        ("event_batch_size = 1001", "event_batch_size"),
        ("tiktok_qps = 0", "tiktok_qps"),
        ("tiktok_qps = 0.000001", "tiktok_qps"),
        ("tiktok_qps = 0.099", "tiktok_qps"),
        ("tiktok_qps = nan", "tiktok_qps"),
        ("tiktok_qps = inf", "tiktok_qps"),
        ('default_phone_region = "USA"', "default_phone_region"),
    ],
)
def test_settings_ranges(settings: str, field: str) -> None:
    line = only_line(error_of(f"[settings]\n{settings}\n"))
    assert line.startswith(f"config.toml: [settings] {field}: ")


def test_settings_are_optional_and_normalized() -> None:
    config = load_config('[settings]\ndefault_phone_region = "gb"\ntiktok_qps = 2.5\n')
    assert config.settings.default_phone_region == "GB"
    assert config.settings.tiktok_qps == 2.5
    assert config.settings.reject_threshold is None


def test_uk_is_not_a_region_code() -> None:
    line = only_line(error_of('[settings]\ndefault_phone_region = "UK"\n'))
    assert '"GB"' in line


# ------------------------------------------------------------------ user_id_types
def test_user_id_types_are_case_insensitive_and_stored_upper() -> None:
    text = BASE.replace(
        'audience_name = "VIP customers"',
        'audience_name = "VIP customers"\nuser_id_types = ["email", "Idfa", "AAID"]',
    )
    config = load_config(text)
    assert config.data_templates["vip"].user_id_types == ("EMAIL", "IDFA", "AAID")
    assert config.resolve("aud", "vip").user_id_types == ("EMAIL", "IDFA", "AAID")


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("[]", "at least one identifier type"),
        ('["EMAIL", "email"]', "lists EMAIL more than once"),
        ('["MAIL"]', "is not an identifier type; use values from EMAIL, PHONE, IDFA, AAID"),
        ('["GAID"]', '"AAID"'),
        ('"EMAIL"', "must be a list, not a single string"),
        ("[1]", "must be a quoted string"),
    ],
)
def test_bad_user_id_types(value: str, fragment: str) -> None:
    text = BASE.replace(
        'audience_name = "VIP customers"',
        f'audience_name = "VIP customers"\nuser_id_types = {value}',
    )
    line = only_line(error_of(text))
    assert line.startswith("config.toml: [data_templates.vip] user_id_types: ")
    assert fragment in line


def test_user_id_types_precedence() -> None:
    text = BASE.replace(
        'kind = "custom_audience"',
        'kind = "custom_audience"\n[destinations.aud.defaults]\nuser_id_types = ["PHONE"]',
    )
    text += '\n[data_templates.idfa]\ndestination = "aud"\naudience_name = "x"\n'
    text += 'user_id_types = ["IDFA"]\n'
    config = load_config(text)
    assert config.resolve("aud", "vip").user_id_types == ("PHONE",)
    assert config.resolve("aud", "idfa").user_id_types == ("IDFA",)
    assert load_config(BASE).resolve("aud", "vip").user_id_types == ("EMAIL", "PHONE")


# ------------------------------------------------------------------ kind rules and references
def test_custom_audience_template_needs_audience_name() -> None:
    text = BASE.replace('audience_name = "VIP customers"\n', "")
    line = only_line(error_of(text))
    assert line.startswith("config.toml: [data_templates.vip] audience_name: is required")


@pytest.mark.parametrize(
    ("line", "field"),
    [('audience_name = "x"', "audience_name"), ('user_id_types = ["EMAIL"]', "user_id_types")],
)
def test_offline_events_template_rejects_audience_fields(line: str, field: str) -> None:
    message = only_line(error_of(BASE + line + "\n"))
    assert message == (
        f'config.toml: [data_templates.sales] {field}: does not apply to kind = "offline_events" '
        "destinations; remove it"
    )


def test_audience_template_rejects_event_fields() -> None:
    text = BASE.replace(
        'audience_name = "VIP customers"',
        f'audience_name = "VIP customers"\nevent_set_id = "{ESET}"',
    )
    line = only_line(error_of(text))
    assert line.startswith("config.toml: [data_templates.vip] event_set_id: does not apply")


def test_audience_name_length() -> None:
    long_name = "a" * 401
    text = BASE.replace('"VIP customers"', f'"{long_name}"')
    line = only_line(error_of(text))
    assert line.startswith("config.toml: [data_templates.vip] audience_name: has 401 characters")
    load_config(BASE.replace('"VIP customers"', f'"{"a" * 400}"'))
    blank = only_line(error_of(BASE.replace('"VIP customers"', '"  "')))
    assert "[data_templates.vip] audience_name: must not be blank" in blank


PREFIX67 = "Customers who bought twice in the last ninety days, all regions, v2"
ADV2 = "7000000000000000002"


def _two_audience_templates(name_a: str, name_b: str, advertiser_b: str = ADV) -> str:
    return f"""
[credentials.acme]

[destinations.aud]
credential = "acme"
advertiser_id = "{ADV}"
kind = "custom_audience"

[destinations.aud_b]
credential = "acme"
advertiser_id = "{advertiser_b}"
kind = "custom_audience"

[data_templates.newsletter]
destination = "aud"
audience_name = "{name_a}"

[data_templates.loyalty]
destination = "aud_b"
audience_name = "{name_b}"
"""


def test_audience_names_tiktok_shows_alike_on_one_advertiser_are_refused() -> None:
    assert len(PREFIX67) == 67
    # Two destinations, one advertiser: both names show as PREFIX67 + "..." in TikTok.
    text = _two_audience_templates(PREFIX67 + " - newsletter", PREFIX67 + " - loyalty card")

    line = only_line(error_of(text))

    assert line.startswith(
        "config.toml: [data_templates.newsletter] and [data_templates.loyalty] audience_name: "
    )
    assert "differ only after character 67" in line
    assert f"on advertiser {ADV} they would write one TikTok audience" in line
    assert "give each a name that differs within its first 67 characters" in line
    assert PREFIX67 not in line  # the document's values are not echoed


def test_the_same_audience_name_twice_on_one_advertiser_is_refused() -> None:
    line = only_line(error_of(_two_audience_templates("VIP customers", "VIP customers")))
    assert "[data_templates.newsletter] and [data_templates.loyalty]" in line
    assert "have the same audience_name" in line


def test_audience_names_that_differ_within_what_tiktok_shows_are_fine() -> None:
    # Different advertisers: separate audience lists, no collision.
    load_config(_two_audience_templates(PREFIX67 + " - newsletter", PREFIX67 + " - loyalty", ADV2))
    # Exactly 70 characters are shown in full, so a difference in character 70 counts.
    load_config(_two_audience_templates(PREFIX67 + "abc", PREFIX67 + "abd"))


def test_unknown_references_are_reported_together() -> None:
    text = (
        BASE.replace('credential = "acme"', 'credential = "acme-old"', 1)
        + '\n[data_templates.orphan]\ndestination = "nowhere"\n'
        + '\n[orchestrations.nightly]\ndestination = "aud"\ndata_template = "missing"\n'
        + 'source_prefix = "exports/"\nschedule = "rate(1 day)"\n'
    )
    lines = error_of(text).splitlines()
    assert lines == [
        'config.toml: [destinations.aud] credential: names "acme-old", but there is no '
        "[credentials.acme-old] table; add it or use one of: acme",
        'config.toml: [data_templates.orphan] destination: names "nowhere", but there is no '
        "[destinations.nowhere] table; add it or use one of: aud, evt",
        'config.toml: [orchestrations.nightly] data_template: names "missing", but there is no '
        "[data_templates.missing] table; add it or use one of: orphan, sales, vip",
    ]


def test_orchestration_template_must_belong_to_its_destination() -> None:
    text = BASE + (
        '\n[orchestrations.n]\ndestination = "evt"\ndata_template = "vip"\n'
        'source_prefix = "exports/"\nschedule = "rate(1 day)"\n'
    )
    line = only_line(error_of(text))
    assert line.startswith("config.toml: [orchestrations.n] data_template: ")
    assert 'belongs to destination "aud", not "evt"' in line


@pytest.mark.parametrize(
    "schedule",
    [
        "cron(0 6 * * ? *)",
        "cron(15 2 ? * MON-FRI *)",
        "rate(1 day)",
        "rate(12 hours)",
        "rate(5 minutes)",
    ],
)
def test_valid_schedules(schedule: str) -> None:
    text = BASE + (
        f'\n[orchestrations.n]\ndestination = "aud"\ndata_template = "vip"\n'
        f'source_prefix = "exports/vip/"\nschedule = "{schedule}"\n'
    )
    assert load_config(text).orchestrations["n"].schedule == schedule


@pytest.mark.parametrize(
    ("schedule", "fragment"),
    [
        ("cron(0 6 * * *)", "has 6 fields"),
        ("cron(0 6 * * * *)", "exactly one of day-of-month"),
        ("rate(1 days)", "singular unit for 1"),
        ("rate(2 hour)", "singular unit for 1"),
        ("rate(0 minutes)", "at least 1"),
        ("every day", "must be cron(...) or rate(...)"),
    ],
)
def test_bad_schedules(schedule: str, fragment: str) -> None:
    text = BASE + (
        f'\n[orchestrations.n]\ndestination = "aud"\ndata_template = "vip"\n'
        f'source_prefix = "exports/vip/"\nschedule = "{schedule}"\n'
    )
    line = only_line(error_of(text))
    assert line.startswith("config.toml: [orchestrations.n] schedule: ")
    assert fragment in line


@pytest.mark.parametrize("prefix", ["", "s3://inbox/exports/", "/exports/"])
def test_bad_source_prefix(prefix: str) -> None:
    text = BASE + (
        f'\n[orchestrations.n]\ndestination = "aud"\ndata_template = "vip"\n'
        f'source_prefix = "{prefix}"\nschedule = "rate(1 day)"\n'
    )
    assert only_line(error_of(text)).startswith("config.toml: [orchestrations.n] source_prefix: ")


# ------------------------------------------------------------------ TOML syntax
def test_toml_syntax_error_has_line_and_column() -> None:
    line = only_line(error_of("[settings]\ntiktok_qps = \n[credentials.acme]\n", source="my.toml"))
    assert line.startswith("my.toml: is not valid TOML: ")
    assert "line 2" in line and "column" in line


def test_duplicate_table_is_a_syntax_error() -> None:
    message = error_of("[credentials.acme]\n[credentials.acme]\n")
    assert "is not valid TOML" in message and "line 2" in message


def test_bytes_input_and_byte_order_mark() -> None:
    assert "acme" in load_config(b"\xef\xbb\xbf" + BASE.encode()).credentials
    assert "is not UTF-8 text" in error_of(b"[credentials.\xff]\n")


# ------------------------------------------------------------------ resolve
def events_config(*, defaults: bool, template: bool) -> Config:
    text = BASE
    if defaults:
        text = text.replace(
            'kind = "offline_events"',
            'kind = "offline_events"\n[destinations.evt.defaults]\n'
            'event_set_id = "7100000000000000003"\ntest_event_code = "DEFAULT1"\n'
            'default_phone_region = "FR"',
        )
    if template:
        text += f'event_set_id = "{ESET}"\ntest_event_code = "TEMPLATE1"\n'
    return load_config(text)


def test_event_set_id_precedence() -> None:
    both = events_config(defaults=True, template=True)
    given = both.resolve("evt", "sales", event_set_id="7100000000000000009")
    assert (given.event_set_id, given.event_set_id_source) == (
        "7100000000000000009",
        "orchestration input",
    )
    from_template = both.resolve("evt", "sales")
    assert (from_template.event_set_id, from_template.event_set_id_source) == (
        ESET,
        "data template",
    )
    from_defaults = events_config(defaults=True, template=False).resolve("evt", "sales")
    assert (from_defaults.event_set_id, from_defaults.event_set_id_source) == (
        "7100000000000000003",
        "destination defaults",
    )
    # No id anywhere is not an error: the file may carry an event_set_id column.
    neither = events_config(defaults=False, template=False).resolve("evt", "sales")
    assert (neither.event_set_id, neither.event_set_id_source) == (None, None)


def test_test_event_code_and_phone_region_precedence() -> None:
    both = events_config(defaults=True, template=True)
    assert both.resolve("evt", "sales").test_event_code == "TEMPLATE1"
    assert both.resolve("evt", "sales", test_event_code="INPUT1").test_event_code == "INPUT1"
    defaults_only = events_config(defaults=True, template=False).resolve("evt", "sales")
    assert defaults_only.test_event_code == "DEFAULT1"
    assert defaults_only.default_phone_region == "FR"
    with_settings = load_config(BASE + '\n[settings]\ndefault_phone_region = "DE"\n')
    assert with_settings.resolve("evt", "sales").default_phone_region == "DE"
    assert load_config(BASE).resolve("evt", "sales").default_phone_region is None


def test_resolve_validates_event_set_id_input() -> None:
    config = events_config(defaults=False, template=False)
    with pytest.raises(ConfigurationError) as info:
        config.resolve("evt", "sales", event_set_id="71000")
    assert info.value.message.startswith("orchestration input: event_set_id: must be exactly 19")
    with pytest.raises(ConfigurationError, match="quote it"):
        config.resolve("evt", "sales", event_set_id=7100000000000000001)  # type: ignore[arg-type]


def test_resolve_rejects_event_input_for_an_audience() -> None:
    with pytest.raises(ConfigurationError, match='does not apply to destination "aud"'):
        load_config(BASE).resolve("aud", "vip", event_set_id=ESET)


def test_resolve_unknown_names_list_the_known_ones() -> None:
    config = load_config(BASE)
    with pytest.raises(ConfigurationError) as info:
        config.resolve("nope", "vip")
    assert 'no destination "nope"; known destinations: aud, evt' in info.value.message
    with pytest.raises(ConfigurationError) as info:
        config.resolve("aud", "nope")
    assert 'no data template "nope"; known data templates: sales, vip' in info.value.message


def test_resolve_template_of_another_destination() -> None:
    with pytest.raises(ConfigurationError) as info:
        load_config(BASE).resolve("evt", "vip")
    message = info.value.message
    assert message.startswith("config.toml: [data_templates.vip] destination: ")
    assert 'belongs to destination "aud", not "evt"' in message
    assert "sales" in message


def test_resolved_template_round_trips_through_json() -> None:
    resolved = events_config(defaults=True, template=True).resolve(
        "evt", "sales", event_set_id="7100000000000000009"
    )
    payload = json.loads(json.dumps(resolved.as_dict()))
    assert payload["advertiser_id"] == ADV
    assert payload["user_id_types"] == ["EMAIL", "PHONE"]
    again = ResolvedTemplate.from_dict(payload)
    assert again == resolved
    assert isinstance(again.user_id_types, tuple)
    audience = load_config(BASE).resolve("aud", "vip")
    assert ResolvedTemplate.from_dict(json.loads(json.dumps(audience.as_dict()))) == audience


def test_from_dict_rejects_a_damaged_payload() -> None:
    payload = load_config(BASE).resolve("aud", "vip").as_dict()
    del payload["credential"]
    payload["extra"] = 1
    with pytest.raises(ConfigurationError, match="missing keys: credential; unknown keys: extra"):
        ResolvedTemplate.from_dict(payload)


def test_sample_is_plain_toml() -> None:
    # The sample is also read by people and other tools; it must stay valid TOML on its own.
    assert "destinations" in tomllib.loads(SAMPLE.read_text())
