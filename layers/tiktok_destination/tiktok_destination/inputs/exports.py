"""Exports: one query result, delivered as one file or as a folder of parts.

Warehouses write query output in parts (Snowflake ``COPY INTO``, Redshift ``UNLOAD``,
Spark / Glue / Databricks, Athena, BigQuery ``EXPORT DATA``), so the inbox knows two shapes:

- ``inbox/<destination>/<data_template>/<file>``: a one-file export, as always;
- ``inbox/<destination>/<data_template>/<export>/…``: an export in parts, every data file
  under ``<export>/`` at any depth (Hive folders such as ``dt=2026-12-07/`` included).

An export in parts is one run, started once, when it is complete. The data template's
``export_completion`` says how that is known:

- ``"marker"``: a completion marker object (``export_marker``, default ``_SUCCESS``) lands
  in the export's folder; parts that land before it start nothing.
- ``"manifest"``: a manifest lands (a Redshift ``UNLOAD … MANIFEST`` file: a name ending in
  ``manifest``); exactly the files it lists are the export, each checked for its size.
- ``"quiet_period"``: no part has arrived for ``export_quiet_seconds``. Each part's
  execution records its arrival and waits; only the execution of the last part to arrive
  goes on, the others end as the named no-op ``PartOfExport``.
- ``"auto"`` (the default): a marker or a manifest starts the export when it lands; a part
  in a folder that has neither is run after the quiet period.

Objects that are not data (folder placeholders ``key/``, Hadoop's hidden files ``_*`` and
``.*`` such as ``_committed_*``, ``_started_*`` and ``.crc`` checksums, ``.metadata``,
zero-byte parts, and markers or manifests where the rule does not use them) never start a
run: their executions end as the named no-op ``NotData``.

Everything that decides is here; Preflight only asks (``resolve``), and validate asks once
more when every part was read, before anything is sent, whether the pinned parts are still
the export (``check_unchanged``).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import unquote, urlparse

from tiktok_destination.adapters.s3 import Bucket
from tiktok_destination.config.resolved import ResolvedTemplate
from tiktok_destination.errors import InputChanged, InputRejected
from tiktok_destination.inputs.formats import detect_format
from tiktok_destination.runs.layout import ARRIVALS_PREFIX, execution_name

logger = logging.getLogger(__name__)

#: Coordination records of quiet-period exports live beside the leases (same permissions).
#: A manifest's name ends with this (Redshift: ``manifest`` or ``<prefix>manifest``).
MANIFEST_SUFFIX = "manifest"
_NOT_DATA_SUFFIXES = (".crc", ".metadata")
#: Changed parts named in an InputChanged message before "and N more".
_SHOWN = 5

Completion = Literal["marker", "manifest", "quiet_period", "folder", "file"]
StartStatus = Literal["run", "not_data", "part_of_export", "wait"]


@dataclass(frozen=True)
class Part:
    """One data file of an export, pinned by its ETag."""

    key: str
    etag: str
    size: int

    def as_dict(self) -> dict[str, Any]:
        return {"key": self.key, "etag": self.etag, "size": self.size}


@dataclass(frozen=True)
class Export:
    """What Preflight makes of one start: a complete export to run, or a no-op."""

    status: StartStatus
    #: why, in a sentence a person reads in the execution's output
    reason: str = ""
    #: the export's folder (``…/<export>/``); None for a one-file export
    folder: str | None = None
    completion: Completion = "file"
    parts: tuple[Part, ...] = ()
    #: ``wait``: seconds until this execution looks again
    wait_seconds: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def etag(self) -> str:
        """One tag for the whole export: the same parts with the same ETags, the same tag."""
        material = json.dumps(sorted((p.key, p.etag) for p in self.parts)).encode()
        return "export-" + hashlib.sha256(material).hexdigest()[:32]

    def no_op(self) -> dict[str, Any]:
        """The Preflight output of a start that runs nothing (names only, never data)."""
        out: dict[str, Any] = {"start": self.status, "reason": self.reason}
        if self.folder:
            out["export"] = self.folder
        if self.status == "wait":
            out["wait_seconds"] = self.wait_seconds
        return out | self.extra


# ---------------------------------------------------------------- names
def basename(key: str) -> str:
    return key.rstrip("/").rsplit("/", 1)[-1]


def is_manifest(key: str) -> bool:
    return basename(key).lower().endswith(MANIFEST_SUFFIX)


def is_marker(key: str, template: ResolvedTemplate) -> bool:
    return basename(key) == template.export_marker


def not_data_reason(key: str, size: int | None, template: ResolvedTemplate) -> str | None:
    """Why the object at ``key`` is not a data file (None when it is one)."""
    name = basename(key)
    if key.endswith("/"):
        return "a folder placeholder"
    if is_marker(key, template):
        return f"the completion marker {name}"
    if is_manifest(key):
        return f"a manifest ({name})"
    if name.startswith(("_", ".")):
        # Hadoop and Spark hide their bookkeeping this way: _SUCCESS, _committed_*,
        # _started_*, _temporary, .part-00000.crc
        return f"a writer's bookkeeping file ({name})"
    if name.lower().endswith(_NOT_DATA_SUFFIXES):
        return f"a writer's bookkeeping file ({name})"
    if size == 0:
        return "an empty object"
    return None


def export_folder(key: str, base: str) -> str | None:
    """The export folder of ``key`` under ``base`` (a template's or a schedule's prefix):
    ``<base><export>/`` when the key lies in a folder there, None for a file directly in it."""
    if not key.startswith(base):
        return None
    rest = key[len(base) :]
    if "/" not in rest:
        return None
    return base + rest.split("/", 1)[0] + "/"


def template_prefix(key: str) -> str | None:
    """``inbox/<destination>/<data_template>/`` of an inbox key, or None."""
    parts = key.split("/")
    if len(parts) >= 4 and parts[0] == "inbox" and parts[1] and parts[2]:
        return "/".join(parts[:3]) + "/"
    return None


def part_format(key: str) -> Literal["csv", "parquet"]:
    """A part's format from its name; a name with no extension (Redshift's
    ``0000_part_00``, optionally ``.gz``) is CSV, whose reader also refuses Parquet bytes."""
    try:
        return detect_format(key)
    except InputRejected:
        name = basename(key).lower()
        stem = name.removesuffix(".gz")
        if "." not in stem:
            return "csv"
        raise


def _has_data_extension(key: str) -> bool:
    try:
        detect_format(key)
    except InputRejected:
        return False
    return True


def export_format(export: Export) -> Literal["csv", "parquet"]:
    """The one format of every part (an export mixing formats is refused)."""
    formats = {part_format(p.key): p.key for p in export.parts}
    if len(formats) > 1:
        raise InputRejected(
            f"{export.folder}: the export mixes CSV and Parquet parts ("
            + ", ".join(f"{fmt}: {basename(key)}" for fmt, key in sorted(formats.items()))
            + "); write one format per export"
        )
    return next(iter(formats))


# ---------------------------------------------------------------- listing
def data_parts(bucket: Bucket, folder: str, template: ResolvedTemplate) -> list[Part]:
    """Every data file under ``folder``, in key order (the order rows are numbered in)."""
    found = [
        Part(obj["Key"], str(obj.get("ETag", "")).strip('"'), int(obj.get("Size", 0)))
        for obj in bucket.list(folder)
        if not_data_reason(obj["Key"], int(obj.get("Size", 0)), template) is None
    ]
    return sorted(found, key=lambda p: p.key)


def _folder_has(
    bucket: Bucket, folder: str, template: ResolvedTemplate
) -> tuple[str | None, str | None]:
    """(marker key, manifest key) directly in ``folder``, each None when absent."""
    marker = manifest = None
    for obj in bucket.list(folder):
        key = str(obj["Key"])
        if "/" in key[len(folder) :]:
            continue
        if is_marker(key, template):
            marker = marker or key
        elif is_manifest(key):
            manifest = manifest or key
    return marker, manifest


def manifest_parts(bucket: Bucket, manifest_key: str) -> list[Part]:
    """The parts a Redshift ``UNLOAD … MANIFEST`` file lists, found in its own folder.

    Entries are matched by file name in the manifest's folder, not by the bucket in their
    ``s3://`` URL, so an export copied from the warehouse's unload bucket into the inbox
    (or run locally from a folder) still works. Every listed part must be there, at the
    listed ``meta.content_length`` when the manifest gives one.
    """
    uri = bucket.uri(manifest_key)
    raw = bucket.get_bytes(manifest_key)
    if raw is None:
        raise InputRejected(f"{uri}: the manifest is gone (deleted after it landed?)")
    try:
        doc = json.loads(raw)
        entries = doc["entries"]
        if not isinstance(entries, list):
            raise TypeError
    except (ValueError, KeyError, TypeError):
        raise InputRejected(
            f'{uri}: not a manifest: expected JSON with an "entries" list of '
            '{"url": "s3://…", "meta": {"content_length": …}} (Redshift UNLOAD … MANIFEST); '
            "if this object is data, rename it: names ending in 'manifest' are read as manifests"
        ) from None
    folder = manifest_key.rsplit("/", 1)[0] + "/" if "/" in manifest_key else ""
    parts: list[Part] = []
    problems: list[str] = []
    for number, entry in enumerate(entries, start=1):
        url = entry.get("url") if isinstance(entry, Mapping) else None
        if not isinstance(url, str) or not basename(urlparse(url).path):
            raise InputRejected(f"{uri}: entry {number} has no file url")
        key = folder + basename(unquote(urlparse(url).path))
        head = bucket.head(key)
        if head is None:
            problems.append(f"{bucket.uri(key)} is missing")
            continue
        size = int(head["ContentLength"])
        meta = entry.get("meta")
        listed = meta.get("content_length") if isinstance(meta, Mapping) else None
        if isinstance(listed, int) and listed != size:
            problems.append(f"{bucket.uri(key)} has {size:,} bytes, the manifest lists {listed:,}")
            continue
        parts.append(Part(key, str(head["ETag"]).strip('"'), size))
    if problems:
        shown = "; ".join(problems[:_SHOWN])
        more = f"; and {len(problems) - _SHOWN} more" if len(problems) > _SHOWN else ""
        raise InputRejected(
            f"{uri}: the export is incomplete, so nothing is sent: {shown}{more}. Copy every "
            "part the manifest lists into its folder (or unload again), then drop the manifest "
            "again"
        )
    if not parts:
        raise InputRejected(f"{uri}: the manifest lists no files")
    return sorted(parts, key=lambda p: p.key)


# ---------------------------------------------------------------- deciding
def resolve(
    bucket: Bucket,
    state: Bucket,
    key: str,
    template: ResolvedTemplate,
    *,
    size: int | None,
    from_event: bool,
    base: str | None,
    execution_id: str = "",
    started_at: str | None = None,
    previous: Any = None,
    now: datetime | None = None,
) -> Export:
    """What one start means: a one-file export, a complete export in parts, or a no-op.

    ``bucket`` holds the export, ``state`` is the state bucket (quiet-period arrivals).
    ``from_event``: an S3 ``Object Created`` event (the completion rules apply); otherwise
    a console start, a re-run or a schedule, which mean the folder as it is now (its
    manifest when it has one; a ``"marker"`` template still needs its marker). ``base`` is
    the prefix exports are folders of (the template's inbox folder or a schedule's prefix).
    """
    if from_event and key.endswith("/"):
        return Export("not_data", f"{key} is a folder placeholder")
    folder = key if key.endswith("/") else export_folder(key, base) if base else None
    if folder is None:
        # A one-file export, exactly as before: a file with a data extension is a run
        # whatever its name (even zero bytes: it fails as empty, so a botched export is
        # never quiet); only a writer's bookkeeping beside it (_SUCCESS, .crc) is not.
        not_data = not_data_reason(key, None, template)
        if not_data and from_event and not _has_data_extension(key):
            return Export("not_data", f"{key} is {not_data}")
        return Export("run", completion="file")
    reason = not_data_reason(key, size, template) if key != folder else None
    rule = template.export_completion
    if from_event:
        if is_marker(key, template) and rule in ("auto", "marker"):
            return _complete(bucket, folder, template, "marker")
        if is_manifest(key) and rule in ("auto", "manifest"):
            return _manifest_export(bucket, key, folder)
        if reason is not None:
            return Export("not_data", f"{key} is {reason}", folder=folder)
        if rule in ("marker", "manifest"):
            return Export(
                "part_of_export",
                f'export_completion = "{rule}": the export starts when its '
                f"{'marker ' + template.export_marker if rule == 'marker' else 'manifest'} "
                "lands",
                folder=folder,
            )
        return _quiet(bucket, state, key, folder, template, execution_id, started_at, previous, now)
    # A deliberate start: the folder as it is.
    if is_manifest(key):
        return _manifest_export(bucket, key, folder)
    marker, manifest = _folder_has(bucket, folder, template)
    if manifest is not None and rule in ("auto", "manifest"):
        return _manifest_export(bucket, manifest, folder)
    if rule == "manifest":
        raise InputRejected(
            f'{bucket.uri(folder)}: export_completion = "manifest" but the folder has no '
            "manifest; unload with MANIFEST, or start with the manifest's key"
        )
    if rule == "marker" and marker is None:
        raise InputRejected(
            f"{bucket.uri(folder)}: the export is not complete: export_completion = "
            f'"marker" and there is no {template.export_marker} in the folder yet'
        )
    completion: Completion = "marker" if marker is not None and rule != "quiet_period" else "folder"
    return _complete(bucket, folder, template, completion)


def _complete(
    bucket: Bucket, folder: str, template: ResolvedTemplate, completion: Completion
) -> Export:
    parts = data_parts(bucket, folder, template)
    if not parts:
        raise InputRejected(
            f"{bucket.uri(folder)}: the export has no data files (only markers, manifests or "
            "empty objects); check that the export wrote its parts into this folder"
        )
    return Export("run", folder=folder, completion=completion, parts=tuple(parts))


def _manifest_export(bucket: Bucket, manifest_key: str, folder: str) -> Export:
    parts = manifest_parts(bucket, manifest_key)
    return Export(
        "run",
        folder=folder,
        completion="manifest",
        parts=tuple(parts),
        extra={"manifest": manifest_key},
    )


def arrivals_prefix(bucket_name: str, folder: str) -> str:
    digest = hashlib.sha256(f"{bucket_name}/{folder}".encode()).hexdigest()[:32]
    return f"{ARRIVALS_PREFIX}{digest}/"


def _quiet(
    bucket: Bucket,
    state: Bucket,
    key: str,
    folder: str,
    template: ResolvedTemplate,
    execution_id: str,
    started_at: str | None,
    previous: Any,
    now: datetime | None,
) -> Export:
    """The quiet-period rule: only the execution of the last part to arrive goes on, once
    ``export_quiet_seconds`` have passed since it arrived.

    Arrival is the execution's start (the S3 event), not the object's LastModified, which
    for a multipart upload is when the upload began, so a large part that finished last
    could look oldest. Each execution records its arrival as an object of its own (never
    overwritten, so no compare-and-swap), named so that the latest sorts last.
    """
    now = now or datetime.now(UTC)
    mine_at = _time(started_at) or now
    prefix = arrivals_prefix(bucket.name, folder)
    name = execution_name(execution_id) or "execution"
    mine = f"{prefix}{mine_at.astimezone(UTC).strftime('%Y%m%dT%H%M%S%fZ')}-{name}.json"
    waited_before = isinstance(previous, Mapping) and previous.get("start") == "wait"
    # Without a start time (Notify rebuilding a failed Preflight's run) nothing is recorded:
    # only a real arrival may make an execution the export's latest.
    if started_at is not None and not waited_before:
        state.put_json(mine, {"key": key, "execution_id": execution_id})
    latest = max((str(obj["Key"]) for obj in state.list(prefix)), default=mine)
    if latest != mine:
        return Export(
            "part_of_export",
            "a part that arrived later continues the export",
            folder=folder,
        )
    if template.export_completion == "auto" and any(_folder_has(bucket, folder, template)):
        return Export(
            "part_of_export",
            "the folder has a marker or manifest: it starts the export",
            folder=folder,
        )
    quiet = template.export_quiet_seconds
    waited = (now - mine_at).total_seconds()
    if waited < quiet:
        return Export(
            "wait",
            f"waiting until no new part has arrived for {quiet} s",
            folder=folder,
            wait_seconds=max(1, int(quiet - waited + 0.999)),
        )
    return _complete(bucket, folder, template, "quiet_period")


def _time(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


# ---------------------------------------------------------------- pinned parts
def check_unchanged(bucket: Bucket, pinned: Mapping[str, Any], template: ResolvedTemplate) -> None:
    """Stop with InputChanged when the export's parts are no longer the pinned ones.

    A part added, changed or deleted during the run would otherwise mix two exports (and a
    mirror would delete whoever the new part holds). Read from the export record
    (``runs/<id>/export.json``).
    """
    if not pinned.get("parts"):
        raise InputChanged("the run's export record is missing; start the export's run again")
    folder = str(pinned["folder"])
    before = {str(p["key"]): str(p["etag"]) for p in pinned["parts"]}
    if pinned.get("completion") == "manifest":
        now = {}
        for part_key in before:
            head = bucket.head(part_key)
            if head is not None:
                now[part_key] = str(head["ETag"]).strip('"')
    else:
        now = {p.key: p.etag for p in data_parts(bucket, folder, template)}
    changes = [f"{k} was added" for k in sorted(set(now) - set(before))]
    changes += [f"{k} was deleted" for k in sorted(set(before) - set(now))]
    changes += [f"{k} was replaced" for k in sorted(before) if k in now and now[k] != before[k]]
    if changes:
        more = f", and {len(changes) - _SHOWN} more" if len(changes) > _SHOWN else ""
        raise InputChanged(
            f"{bucket.uri(folder)}: the export changed while this run was reading it "
            f"({'; '.join(changes[:_SHOWN])}{more}), so nothing more is sent from it; the "
            "export's newest complete version starts a run of its own (or start one for the "
            "folder)"
        )


__all__ = [
    "Export",
    "Part",
    "check_unchanged",
    "data_parts",
    "export_folder",
    "export_format",
    "manifest_parts",
    "not_data_reason",
    "part_format",
    "resolve",
    "template_prefix",
]
