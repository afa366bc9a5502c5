"""Which header column feeds which field: the one column resolution rule.

A misnamed identifier column skipped without a word would, in a mirrored audience, remove
everybody it held. So, for every field a data template reads:

1. an explicit ``columns = { email = "Email Address" }`` in the data template wins; a
   mapped column missing from the header stops the run;
2. otherwise the column named like the field or one of its well-known :data:`ALIASES`
   (compared without case, spaces, ``_``, ``-`` or ``.``); two columns claiming one field
   stop the run, asking for an explicit mapping;
3. a column that looks like an identifier the template asks for (``customer_email``,
   ``phone2``) but feeds nothing stops the run with a "did you mean" naming the exact
   ``columns`` or ``ignore_columns`` line to add; so does a column whose name is a near miss
   of such a field or alias (``emial``, ``phnoe``) or a common translation of it
   (:data:`TRANSLATIONS`: ``courriel``, ``correo``, ``Telefon``), and, for offline events,
   a near miss or translation of an event field that has no column (``timestmap``,
   ``valeur``). This holds on every run, a template's first one included: a misspelt header
   must not become a deleted identifier type, nor events sent without their value.

Identifier columns of a type the template does not ask for, and any other column, are
ignored and listed as such in the run report. Header names are echoed in messages only
when they cannot be a value (a file without a header line starts with personal data).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from tiktok_destination.errors import ConfigurationError, InputRejected

#: identifier fields of custom audiences (the lowercase id types)
IDENTIFIER_FIELDS: tuple[str, ...] = ("email", "phone", "idfa", "aaid")
#: identifier fields an offline event carries
EVENT_IDENTIFIER_FIELDS: tuple[str, ...] = ("email", "phone")
#: every field ``events.normalize_event_row`` reads from a row
EVENT_FIELDS: tuple[str, ...] = (
    "event_set_id",
    "event",
    "event_id",
    "timestamp",
    "email",
    "phone",
    "event_channel",
    "currency",
    "value",
    "price",
    "quantity",
    "content_type",
    "content_id",
    "content_category",
    "content_name",
    "brand",
    "order_id",
    "shop_id",
    "description",
)
#: every field a ``columns`` mapping may name
ALL_FIELDS: tuple[str, ...] = tuple(dict.fromkeys(IDENTIFIER_FIELDS + EVENT_FIELDS))

#: other header names taken for a field without a mapping (also documented in the README).
#: Pre-hashed names are included: a 64-hex value in an identifier column passes through.
ALIASES: dict[str, tuple[str, ...]] = {
    "email": (
        "email_address",
        "e_mail",
        "e_mail_address",
        "mail",
        "email_addr",
        "email_sha256",
        "sha256_email",
        "hashed_email",
        "email_hash",
    ),
    "phone": (
        "phone_number",
        "phone_no",
        "mobile",
        "mobile_phone",
        "mobile_number",
        "cell",
        "cell_phone",
        "cellphone",
        "telephone",
        "tel",
        "msisdn",
        "phone_sha256",
        "sha256_phone",
        "hashed_phone",
        "phone_hash",
    ),
    "idfa": (
        "ios_advertising_id",
        "ios_ad_id",
        "apple_advertising_id",
        "idfa_sha256",
    ),
    "aaid": (
        "gaid",
        "adid",
        "google_advertising_id",
        "google_ad_id",
        "android_advertising_id",
        "android_ad_id",
        "aaid_sha256",
    ),
}

#: Common names of a field in the languages warehouses are often kept in, beside the
#: English :data:`ALIASES`. They are not read as the field (a guess could feed the wrong
#: data): an unused column named like one stops the run with a "did you mean". Compared
#: like header names and also without accents (``Téléphone`` = ``telephone``); German
#: umlauts are also listed spelt out (``waehrung``). Documented in the README.
_DEVICE_ID_TRANSLATIONS: dict[str, tuple[str, ...]] = {
    "French": ("identifiant_publicitaire", "id_appareil", "identifiant_appareil"),
    "Spanish": ("id_de_publicidad", "id_dispositivo", "identificador_de_dispositivo"),
    "German": ("werbe_id", "geraete_id", "geräte_id"),
    "Portuguese": ("id_de_publicidade", "id_do_dispositivo"),
    "Italian": ("id_pubblicita", "id_pubblicitario"),
    "Dutch": ("advertentie_id", "apparaat_id"),
}
TRANSLATIONS: dict[str, dict[str, tuple[str, ...]]] = {
    "email": {
        "French": ("courriel", "adresse_courriel", "adresse_email", "adresse_mail"),
        "Spanish": ("correo", "correo_electronico", "direccion_de_correo", "direccion_email"),
        "German": ("email_adresse", "mail_adresse"),
        "Portuguese": ("correio_eletronico", "endereco_de_email", "endereco_email"),
        "Italian": ("posta_elettronica", "indirizzo_email", "indirizzo_di_posta"),
        "Dutch": ("emailadres", "mailadres"),
        "Swedish/Norwegian": ("e_post", "e_postadresse", "e_postadress"),
    },
    "phone": {
        "French": ("téléphone", "numero_de_telephone", "portable", "telephone_portable"),
        "Spanish": ("teléfono", "numero_de_telefono", "celular", "movil"),
        "German": ("telefon", "telefonnummer", "handy", "handynummer", "mobilnummer"),
        "Portuguese": ("telefone", "numero_de_telefone", "telemovel"),
        "Italian": ("telefono", "numero_di_telefono", "cellulare"),
        "Dutch": ("telefoon", "telefoonnummer", "mobiel", "mobiel_nummer"),
    },
    "idfa": _DEVICE_ID_TRANSLATIONS,
    "aaid": _DEVICE_ID_TRANSLATIONS,
    "event": {
        "French": ("evenement",),
        "Spanish": ("evento",),
        "German": ("ereignis",),
        "Dutch": ("gebeurtenis",),
    },
    "timestamp": {
        "French": ("horodatage", "date_heure"),
        "Spanish": ("marca_de_tiempo", "fecha_hora"),
        "German": ("zeitstempel",),
        "Portuguese": ("data_hora",),
        "Italian": ("data_ora",),
        "Dutch": ("tijdstempel",),
    },
    "value": {
        "French": ("valeur", "montant"),
        "Spanish": ("valor", "importe"),
        "German": ("wert", "betrag"),
        "Italian": ("valore", "importo"),
        "Dutch": ("waarde", "bedrag"),
    },
    "currency": {
        "French": ("devise", "monnaie"),
        "Spanish": ("moneda", "divisa"),
        "German": ("währung", "waehrung"),
        "Portuguese": ("moeda",),
        "Italian": ("valuta",),
    },
    "price": {
        "French": ("prix",),
        "Spanish": ("precio",),
        "German": ("preis",),
        "Portuguese": ("preço",),
        "Italian": ("prezzo",),
        "Dutch": ("prijs",),
    },
    "quantity": {
        "French": ("quantité",),
        "Spanish": ("cantidad",),
        "German": ("menge", "anzahl"),
        "Portuguese": ("quantidade",),
        "Italian": ("quantità",),
        "Dutch": ("aantal",),
    },
    "order_id": {
        "French": ("id_commande", "numero_de_commande", "numero_commande"),
        "Spanish": ("id_pedido", "numero_de_pedido", "numero_pedido"),
        "German": ("bestellnummer", "bestell_id"),
        "Italian": ("id_ordine", "numero_ordine"),
        "Dutch": ("bestelnummer",),
    },
}

_MAX_SHOWN = 30
_SEPARATORS = re.compile(r"[\s_.\-]+")
_WORDS = re.compile(r"[a-z]+")
_UUID_LIKE = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-")
_HEX_LIKE = re.compile(r"[0-9a-fA-F]{32,}")

# Words that make a column about an identifier rather than the identifier itself
# (email_opt_in, has_phone, phone_type, email_domain): such a column is not flagged.
_METADATA_WORDS = frozenset(
    """
    opt optin optout opted consent consented verified valid validated status flag flags
    subscribed unsubscribed subscription bounced bounce type domain date time timestamp at
    updated created count permission allowed is has country code ext extension os carrier
    format source sent opened clicked version app template preference preferences
    frequency score quality provider
    """.split()  # noqa: SIM905 - a word list reads better as a block
)
# Substrings (of the name without separators) and words that suggest an identifier.
_LOOKS: dict[str, tuple[tuple[str, ...], frozenset[str]]] = {
    "email": (("email",), frozenset({"mail"})),
    "phone": (
        ("phone", "mobile", "msisdn", "telephone"),
        frozenset({"tel", "cell", "mob", "tlf"}),
    ),
    "idfa": (("idfa", "iosad", "appleadvertising"), frozenset()),
    "aaid": (("aaid", "gaid", "adid", "androidad", "googlead"), frozenset()),
}
# Device-wide names could hold either advertising id.
_DEVICE_HINTS: tuple[str, ...] = ("advertisingid", "deviceid", "maid")


def compact(name: str) -> str:
    """A header name without case, surrounding blanks, spaces, ``_``, ``-`` or ``.``."""
    return _SEPARATORS.sub("", name.strip().lower())


def _folded(name: str) -> str:
    """:func:`compact` without accents: ``Téléphone`` and ``telephone`` are one name."""
    text = unicodedata.normalize("NFKD", compact(name).replace("ß", "ss"))
    return "".join(ch for ch in text if not unicodedata.combining(ch))


_ACCEPTED: dict[str, frozenset[str]] = {
    name: frozenset({compact(name), *(compact(alias) for alias in ALIASES.get(name, ()))})
    for name in ALL_FIELDS
}


def looks_like_data(name: str) -> bool:
    """A header cell that may be a value (a file without header): never echo it."""
    digits = sum(ch.isdigit() for ch in name)
    return (
        "@" in name
        or digits >= 7
        or _UUID_LIKE.match(name) is not None
        or _HEX_LIKE.search(name) is not None
    )


def header_text(header: Sequence[str]) -> str:
    """The header for an error message, or a note when it seems to hold data."""
    if any(looks_like_data(name) for name in header):
        return (
            "the first line seems to hold data values, not column names (not shown because "
            "they may be personal data); the first line must be a header"
        )
    shown = [name[:40] if name else "(empty)" for name in header[:_MAX_SHOWN]]
    more = len(header) - len(shown)
    return "header has: " + ", ".join(shown) + (f" ... and {more} more" if more > 0 else "")


def identifier_kinds(name: str) -> list[str]:
    """The identifier fields a header name looks like, best guess first (may be none)."""
    key = compact(name)
    exact = [f for f in IDENTIFIER_FIELDS if key in _ACCEPTED[f]]
    if exact:
        return exact
    words = set(_WORDS.findall(name.lower()))
    if words & _METADATA_WORDS:
        return []
    if any(hint in key for hint in _DEVICE_HINTS):
        return ["idfa", "aaid"]
    found = [
        kind
        for kind, (parts, whole_words) in _LOOKS.items()
        if any(part in key for part in parts) or words & whole_words
    ]
    if "phone" in found and ("idfa" in found or "aaid" in found):
        found.remove("phone")  # mobile_ad_id is a device id, not a phone number
    return found


def _edits(a: str, b: str) -> int:
    """Edits (insert, delete, replace, swap two neighbours) that turn ``a`` into ``b``."""
    before: list[int] = []
    row = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        earlier, before, row = before, row, [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            row[j] = min(before[j] + 1, row[j - 1] + 1, before[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                row[j] = min(row[j], earlier[j - 2] + 1)
    return row[len(b)]


def near_miss(name: str, field_name: str, *, long_edits: int = 2) -> bool:
    """A header name a typo away from ``field_name`` or one of its aliases (``emial``,
    ``phnoe``, ``mobil``, ``émail``): ``long_edits`` edits for names of 6 or more characters;
    for 4 or 5, one letter more, less, or swapped with its neighbour (a replaced letter turns
    ``aaid`` into ``paid``); none for shorter ones (``tel`` is too close to too many words to
    guess). Accents alone are a miss."""
    key = compact(name)
    names = _ACCEPTED.get(field_name, frozenset())
    if key in names:
        return False  # the field's own name or an alias is a hit, not a miss
    key = _folded(name)
    if key in names:
        return True
    for accepted in names:
        if len(accepted) < 4:
            continue
        if len(accepted) >= 6:
            close = (
                abs(len(key) - len(accepted)) <= long_edits and _edits(key, accepted) <= long_edits
            )
        else:
            same_letters = len(key) != len(accepted) or sorted(key) == sorted(accepted)
            close = same_letters and _edits(key, accepted) == 1
        if close:
            return True
    return False


_TRANSLATED: dict[str, list[tuple[str, str]]] = {}
for _field, _languages in TRANSLATIONS.items():
    for _language, _names in _languages.items():
        for _name in _names:
            _TRANSLATED.setdefault(_folded(_name), []).append((_field, _language))


def translation_of(name: str, field_name: str) -> str | None:
    """The languages in which header ``name`` is a common name of ``field_name``
    (:data:`TRANSLATIONS`, without case or accents), e.g. "Spanish/Italian", or None."""
    languages = [lang for found, lang in _TRANSLATED.get(_folded(name), ()) if found == field_name]
    return "/".join(languages) or None


def resembles(name: str, field_name: str, *, long_edits: int = 2) -> str | None:
    """How header ``name`` resembles ``field_name`` without being it or an alias, as words
    for a message ("is a near miss of email", "is Spanish for email"), or None."""
    language = translation_of(name, field_name)
    if language is not None:
        meaning = "a device id" if field_name in ("idfa", "aaid") else field_name
        return f"is {language} for {meaning}"
    if near_miss(name, field_name, long_edits=long_edits):
        return f"is a near miss of {field_name} (a typo?)"
    return None


def _toml(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass
class ColumnResolution:
    """``used``: field -> header column (lowercase, stripped); ``ignored``: header column ->
    why it is unused; ``missing``: identifier fields asked for that no column supplies."""

    used: dict[str, str] = field(default_factory=dict)
    ignored: dict[str, str] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)


def resolve_columns(
    header: Sequence[str],
    fields: Sequence[str],
    *,
    identifier_fields: Sequence[str],
    columns: Mapping[str, str] | None = None,
    ignore_columns: Iterable[str] = (),
    source: str,
    data_template: str | None = None,
) -> ColumnResolution:
    """Which header column feeds each of ``fields`` (the rules are in the module docstring).

    ``identifier_fields`` are the identifiers the template asks for: an unused column that
    looks like one of them stops the run. Raises ``InputRejected`` naming the fix.
    """
    where = f"[data_templates.{data_template}]" if data_template else "the data template"
    names = [name.strip().lower() for name in header]
    present = {name for name in names if name}
    ignored = {name.strip().lower() for name in ignore_columns}
    result = ColumnResolution()

    for target, column in (columns or {}).items():
        if target not in fields:
            raise ConfigurationError(
                f"{where} columns: {target} is not a field this data template reads; "
                f"remove it (fields: {', '.join(fields)})"
            )
        name = column.strip().lower()
        if name not in present:
            raise InputRejected(
                f"{source}: {where} maps {target} to column {_toml(column)}, which the file "
                f"does not have; {header_text(names)}. Fix the name in the data template's "
                f"columns (names are compared without case) or export the column"
            )
        result.used[target] = name

    taken = set(result.used.values())
    for target in fields:
        if target in result.used:
            continue
        claims = [
            name
            for name in names
            if name
            and name not in taken
            and name not in ignored
            and not looks_like_data(name)
            and compact(name) in _ACCEPTED[target]
        ]
        if len(claims) > 1:
            first, second = claims[0], claims[1]
            raise InputRejected(
                f"{source}: columns '{first}' and '{second}' could both be the {target} "
                f"column; say which one to use in {where}, e.g. columns = "
                f"{{ {target} = {_toml(second)} }} and ignore_columns = [{_toml(first)}]"
            )
        if claims:
            result.used[target] = claims[0]
            taken.add(claims[0])

    asked = [f for f in identifier_fields if f in fields]
    problems: list[str] = []
    for position, name in enumerate(names, start=1):
        if not name or name in taken:
            continue
        if looks_like_data(name):
            result.ignored[f"column {position}"] = "not used (its name is not shown)"
            continue
        if name in ignored:
            result.ignored[name] = "listed in ignore_columns"
            continue
        kinds = identifier_kinds(name)
        wanted = [kind for kind in kinds if kind in asked]
        like = None if wanted else _resembled(name, fields, asked, result.used)
        if wanted:
            problems.append(_did_you_mean(name, wanted[0], result.used, where))
        elif like is not None:
            problems.append(_did_you_mean(name, like[0], result.used, where, looks=like[1]))
        elif kinds:
            result.ignored[name] = (
                f"looks like {kinds[0]}, which this data template does not ask for"
            )
        else:
            result.ignored[name] = "not a field this data template reads"
    if problems:
        raise InputRejected(f"{source}: " + " ".join(problems))
    result.missing = [f for f in asked if f not in result.used]
    return result


def _resembled(
    name: str, fields: Sequence[str], asked: Sequence[str], used: Mapping[str, str]
) -> tuple[str, str] | None:
    """The field an unused column's name is a near miss or translation of, and how.

    An identifier the template asks for counts even when another column feeds it (two
    spellings of email in one file are as suspect as ``customer_email`` is); a column about
    an identifier (``email_status``) does not. Another field (offline events) counts only
    when no column feeds it, and only one letter off for long names: with a column, nothing
    goes missing, and ``contact_id`` is two letters from ``content_id``.
    """
    about = bool(set(_WORDS.findall(name.lower())) & _METADATA_WORDS)
    for target in fields:
        if target in asked:
            how = None if about else resembles(name, target)
        elif target not in used:
            how = resembles(name, target, long_edits=1)
        else:
            how = None
        if how is not None:
            return target, how
    return None


def _did_you_mean(
    name: str, kind: str, used: Mapping[str, str], where: str, *, looks: str | None = None
) -> str:
    ignore = f"ignore_columns = [{_toml(name)}]"
    mapping = f"columns = {{ {kind} = {_toml(name)} }}"
    a_kind = ("an " if kind[0] in "aeiou" else "a ") + kind
    looks = looks or f"looks like {a_kind} column"
    if kind in used:
        return (
            f"Column '{name}' {looks} but is not used ({kind} is read from column "
            f"'{used[kind]}'). If it may be left out, add {ignore} to {where}; to read "
            f"{kind} from it instead, set {mapping} there."
        )
    return (
        f"Column '{name}' {looks} but is not used: no column is named {kind} or one of its "
        f"aliases. Did you mean {mapping}? Add it to {where} (or rename the column to "
        f"{kind}); if it is not {a_kind} column, add {ignore} there."
    )


def resolve_event_columns(
    header: Sequence[str],
    *,
    columns: Mapping[str, str] | None = None,
    ignore_columns: Iterable[str] = (),
    source: str,
    data_template: str | None = None,
) -> ColumnResolution:
    """:func:`resolve_columns` for an offline events file (validate and preflight)."""
    return resolve_columns(
        header,
        EVENT_FIELDS,
        identifier_fields=EVENT_IDENTIFIER_FIELDS,
        columns=columns,
        ignore_columns=ignore_columns,
        source=source,
        data_template=data_template,
    )
