"""``load_config``: the TOML document to a validated :class:`Config`, or one
:class:`~tiktok_destination.errors.ConfigurationError` whose message has one line per
problem, each naming the source, the table and the field, and saying the fix.

pydantic's and TOML's own errors are rewritten here into those lines (``_format_error``);
messages never echo the value that was written.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from tiktok_destination.config.document import Config
from tiktok_destination.config.fields import _ERROR_TYPE, _HINTS, _NAME_RE, _quote
from tiktok_destination.config.references import _reference_problems
from tiktok_destination.config.tables import (
    Credential,
    DataTemplate,
    Destination,
    DestinationDefaults,
    Orchestration,
    Settings,
)
from tiktok_destination.errors import ConfigurationError

# Keys that mean someone is about to commit a secret to the file.
_SECRET_KEY_RE = re.compile(r"token|secret|password|app_key|api_key", re.IGNORECASE)


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
