"""``tiktok-destination``: run the destination locally, on moto and the TikTok emulator.

    tiktok-destination demo
    tiktok-destination run FILE --config CONFIG --destination NAME --template NAME
        [--allow-mass-removal]
    tiktok-destination rerun RUN_ID --config CONFIG [--allow-mass-removal]
    tiktok-destination emulator
    tiktok-destination auth-link --credential NAME --redirect-uri URL

Progress goes to stderr; the report to stdout (``--json``: the report alone, as JSON).
Handler logs go to ``<state-dir>/logs/handlers.log`` (``--verbose``: also to stderr).
``run`` and ``rerun`` hold the state dir's lock while they work (``--wait-lock``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any, TextIO

from tiktok_destination.config.document import Config
from tiktok_destination.config.loader import load_config
from tiktok_destination.errors import DestinationError
from tiktok_destination.runs.workflow_actions import ACTIONS

from .state_dir import StateDirWriteError, cannot_write, disk_full

DEFAULT_STATE_DIR = Path(".tiktok-destination")
EMULATOR_STATE = "emulator.json (the local TikTok emulator's state)"
LOCAL_TOKEN = "local-emulator-token"  # noqa: S105 - the emulator's token, not a secret


def _err(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ------------------------------------------------------------------ TikTok side
@contextlib.contextmanager
def tiktok_side(
    config: Config, *, tiktok_url: str | None, state_dir: Path
) -> Iterator[tuple[str, Any]]:
    """The TikTok base URL to use, and our emulator when we started one (else None)."""
    if tiktok_url:
        yield tiktok_url, None
        return
    from .emulator import TikTokEmulator
    from .runner import LOCAL_APP_ID, LOCAL_APP_SECRET

    emu = TikTokEmulator()
    saved = state_dir / "emulator.json"
    if saved.exists():
        emu.load(saved)
    emu.set_app(LOCAL_APP_ID, LOCAL_APP_SECRET)
    advertisers = sorted({d.advertiser_id for d in config.destinations.values()})
    for advertiser in advertisers:
        emu.add_advertiser(advertiser, f"Advertiser {advertiser[-4:]}")
    emu.add_token(LOCAL_TOKEN, advertisers)
    for destination in config.destinations.values():
        if destination.kind != "offline_events":
            continue
        ids = {destination.defaults.event_set_id if destination.defaults else None}
        ids |= {t.event_set_id for t in config.data_templates.values()}
        ids |= {o.event_set_id for o in config.orchestrations.values()}
        for event_set_id in sorted(i for i in ids if i):
            emu.add_event_set(
                destination.advertiser_id, event_set_id, f"Event set {event_set_id[-4:]}"
            )
    # The emulator stands in for a service that never loses what it acknowledged: each change
    # is saved before it is answered, so a killed run leaves "TikTok" as it really would be.
    try:
        emu.persist(saved)
    except OSError as err:
        raise StateDirWriteError(
            cannot_write(state_dir, EMULATOR_STATE, err.strerror or str(err), err)
        ) from None
    base_url = emu.start()
    try:
        yield base_url, emu
    finally:
        emu.stop()


def _log_stream(state_dir: Path, verbose: bool) -> TextIO:
    (state_dir / "logs").mkdir(parents=True, exist_ok=True)
    stream = (state_dir / "logs" / "handlers.log").open("a", encoding="utf-8")
    if verbose:
        return _Tee(stream, sys.stderr)  # type: ignore[return-value]
    return _Tee(stream)  # type: ignore[return-value]


class _Tee:
    """Log streams; a log line that cannot be written (disk full) is dropped, not a traceback."""

    def __init__(self, *streams: TextIO):
        self.streams = streams

    def write(self, text: str) -> int:
        for stream in self.streams:
            with contextlib.suppress(OSError):
                stream.write(text)
        return len(text)

    def flush(self) -> None:
        for stream in self.streams:
            with contextlib.suppress(OSError):
                stream.flush()


# ------------------------------------------------------------------ running
def _local(
    args: argparse.Namespace, config_text: bytes, base_url: str, emu: Any, state_dir: Path
) -> Any:
    from .runner import LOCAL_APP_ID, LOCAL_APP_SECRET, LocalDestination

    local = LocalDestination(
        state_dir=state_dir,
        tiktok_base_url=base_url,
        progress=(lambda msg: _err(f"  {msg}")),
        log_stream=_log_stream(state_dir, args.verbose),
    )
    local.__enter__()
    try:
        local.put_config(config_text)  # a full state dir fails here already
        config = load_config(config_text, source=str(args.config))
        token = args.access_token or os.environ.get("TIKTOK_ACCESS_TOKEN")
        if emu is not None:
            token = token or LOCAL_TOKEN
            local.put_app(LOCAL_APP_ID, LOCAL_APP_SECRET)
        if not token:
            raise DestinationError(
                "--tiktok-url needs a token: pass --access-token or set TIKTOK_ACCESS_TOKEN"
            )
        for name in config.credentials:
            advertisers = sorted(
                {d.advertiser_id for d in config.destinations.values() if d.credential == name}
            )
            local.put_token(name, token, advertisers)
    except BaseException:
        local.__exit__(None, None, None)
        raise
    return local


def print_report(report: dict[str, Any] | None, out: TextIO = sys.stdout) -> None:
    if not report:
        print("(no report was written)", file=out)
        return
    print(f"\nRun {report.get('run_id')}  {report.get('status', '').upper()}", file=out)
    print(f"  source       {report.get('source')}", file=out)
    export = report.get("export") or {}
    if export:
        parts = export.get("parts") or []
        print(
            f"  export       {len(parts)} parts, complete by {export.get('completion')}: "
            + ", ".join(f"{p['part']} {p['rows_received']} rows" for p in parts[:5])
            + (f", and {len(parts) - 5} more" if len(parts) > 5 else ""),
            file=out,
        )
    print(
        f"  destination  {report.get('destination')} / {report.get('data_template')}"
        f"  (advertiser {report.get('advertiser_id')})",
        file=out,
    )
    rows = report.get("rows") or {}
    if rows:
        reasons = ", ".join(f"{k} {v}" for k, v in (rows.get("rejected_by_reason") or {}).items())
        print(
            f"  rows         {rows.get('received')} received, {rows.get('rejected')} rejected"
            + (f" ({reasons})" if reasons else ""),
            file=out,
        )
    lines_note = (report.get("lines") or {}).get("note")
    if lines_note:
        print(f"  lines        {lines_note}", file=out)
    if "audience" in report:
        aud, mem = report["audience"], report.get("members") or {}
        print(
            f"  audience     {aud.get('name')}  id {aud.get('audience_id')}"
            + ("  (created)" if aud.get("created_this_run") else ""),
            file=out,
        )
        duplicates = aud.get("duplicate_audience_ids") or []
        if duplicates:
            print(
                f"  duplicates   other audiences of this name in TikTok, not used and not "
                f"deleted (delete them in Ads Manager if unwanted): {', '.join(duplicates)}",
                file=out,
            )
        print(
            f"  members      {mem.get('in_file')} in file: +{mem.get('added')} added, "
            f"-{mem.get('removed')} removed, {mem.get('unchanged')} unchanged",
            file=out,
        )
    # Audiences and events alike: each dropped value is a line of the rejects file.
    dropped = (report.get("dropped_values") or {}).get("by_reason") or {}
    if dropped:
        listed = ", ".join(f"{k} {v}" for k, v in dropped.items())
        print(f"  dropped      invalid values in otherwise usable rows: {listed}", file=out)
    if "events" in report:
        ev = report["events"]
        print(
            f"  events       {ev.get('built')} built, {ev.get('sent')} sent"
            f" ({ev.get('duplicate_rows_merged')} duplicate rows merged)",
            file=out,
        )
        print(f"  by event     {ev.get('by_event')}", file=out)
        print(f"  by channel   {ev.get('by_event_channel')}", file=out)
        print(f"  value        {ev.get('value_method')}", file=out)
    batches = report.get("batches") or {}
    if batches:
        print(
            f"  batches      {batches.get('total')} planned, "
            f"{batches.get('sent_this_execution')} sent now, "
            f"{batches.get('already_done_before')} already done before",
            file=out,
        )
    api = report.get("api") or {}
    print(f"  TikTok API   {api.get('calls', 0)} calls, {api.get('retries', 0)} retries", file=out)
    for path in report.get("rejects_files") or []:
        print(f"  rejects      {path}", file=out)
    action = report.get("workflow_action")
    if action:
        print(f"\n  WORKFLOW ACTION: {action['title']} ({action['action']})", file=out)
        print(f"  {action.get('message')}", file=out)
        for i, step in enumerate(action.get("steps") or [], 1):
            print(f"    {i}. {step}", file=out)
    for reminder in report.get("reminders") or []:
        print(f"  note         {reminder}", file=out)


def _finish(
    result: Any, args: argparse.Namespace, state_dir: Path, local: Any, emu: Any = None
) -> int:
    lease = ((result.output or {}).get("run") or {}).get("lease") or {}
    if result.succeeded and lease.get("status") == "duplicate":
        _err(
            f"run {lease.get('holder_run_id')} of this input is already in progress "
            f"(execution {lease.get('holder_execution_id')}): nothing to do"
        )
        if args.json:
            print(json.dumps({"status": "already_running", "lease": lease}, indent=2))
        return 0
    report = result.report
    if report and report.get("run_id"):
        report_path = state_dir / "state-bucket" / "runs" / str(report["run_id"]) / "report.json"
    else:
        report_path = None
    if report:
        # Locally the state bucket is a directory: show paths a reader can open.
        from .runner import STATE_BUCKET

        local_root = str(state_dir / "state-bucket") + "/"
        report["rejects_files"] = [
            f.replace(f"s3://{STATE_BUCKET}/", local_root) for f in report.get("rejects_files", [])
        ]
    if args.json:
        print(json.dumps(report, indent=2, sort_keys=True))
    else:
        print_report(report)
        if report_path:
            print(f"  report       {report_path}")
    failure = local.mirror.failure if local.mirror is not None else None
    if failure is not None:
        # The step that failed may have been Notify's report itself: say what really happened.
        _err(f"error: {failure.message}")
        return 2
    saving = emu.save_failure if emu is not None else None
    if saving is not None and not result.succeeded:
        # The emulator answered 503 to changes it could not store: the run failed on that.
        reason = saving.strerror or str(saving)
        _err(f"error: {cannot_write(state_dir, EMULATOR_STATE, reason, saving)}")
        return 2
    if not result.succeeded:
        action = ACTIONS.get(result.error or "")
        if not (report and report.get("workflow_action")):
            # No report to show it: the failure's own message, as one line (the cause is the
            # state machine's JSON error, which names the type and carries the message).
            message = _cause_message(result.cause)
            title = f"{action.title}: " if action else f"{result.error}: " if result.error else ""
            _err(f"error: {'' if message.startswith(title) else title}{message}")
            return 2
        _err(f"run failed: {result.error}")
        return 2
    return 0


def _cause_message(cause: str | None) -> str:
    """The first line of a failed execution's error message (its cause is JSON, or text)."""
    text = cause or "no cause was given"
    with contextlib.suppress(ValueError, TypeError, AttributeError):
        text = str(json.loads(text).get("errorMessage") or text)
    return (text.strip().splitlines() or [text])[0]


def _readable_file(path: str | Path, what: str) -> Path:
    """``path`` as a file we can read, or one clear line (before anything starts)."""
    file = Path(path)
    if file.is_dir():
        raise DestinationError(f"{what} {file} is a directory; pass a file")
    try:
        with file.open("rb") as fh:
            fh.read(1)
    except FileNotFoundError:
        raise DestinationError(f"{what} {file}: no such file") from None
    except OSError as err:
        raise DestinationError(
            f"{what} {file} cannot be read ({err.strerror or err}); check it and its permissions"
        ) from None
    return file


def _readable_export(folder: Path) -> None:
    """A folder run as one export: it must hold files, each readable (checked up front)."""
    files = [p for p in folder.rglob("*") if not p.is_dir()]
    if not files:
        raise DestinationError(
            f"FILE {folder} is a directory with no files; pass a file, or a folder holding "
            "an export's parts"
        )
    for file in files:
        _readable_file(file, "part")


def _lock(args: argparse.Namespace, state_dir: Path, command: str) -> Any:
    from .state_dir import locked

    return locked(state_dir, f"tiktok-destination {command}", wait=args.wait_lock, notify=_err)


def cmd_run(args: argparse.Namespace) -> int:
    state_dir = Path(args.state_dir)
    export = Path(args.file).is_dir()
    if export:
        _readable_export(Path(args.file))
    else:
        _readable_file(args.file, "FILE")
    config_text = _readable_file(args.config, "--config").read_bytes()
    config = load_config(config_text, source=str(args.config))
    with (
        _lock(args, state_dir, "run"),
        tiktok_side(config, tiktok_url=args.tiktok_url, state_dir=state_dir) as (base_url, emu),
    ):
        local = _local(args, config_text, base_url, emu, state_dir)
        try:
            extra = {
                k: v
                for k, v in (
                    ("event_set_id", args.event_set_id),
                    ("test_event_code", args.test_event_code),
                    ("allow_mass_removal", args.allow_mass_removal),
                )
                if v
            }
            _err(f"Running {args.file} → {args.destination}/{args.template}")
            if export:
                # A folder is one export in parts (exports.py), as a warehouse writes it.
                result = local.run_export(Path(args.file), args.destination, args.template, extra)
            else:
                result = local.run_file(Path(args.file), args.destination, args.template, extra)
        finally:
            local.__exit__(None, None, None)
    return _finish(result, args, state_dir, local, emu)


def cmd_rerun(args: argparse.Namespace) -> int:
    state_dir = Path(args.state_dir)
    config_path = (
        Path(args.config)
        if args.config
        else state_dir / "state-bucket" / "config" / "destinations.toml"
    )
    args.config = config_path
    config_text = _readable_file(config_path, "--config").read_bytes()
    config = load_config(config_text, source=str(config_path))
    with (
        _lock(args, state_dir, "rerun"),
        tiktok_side(config, tiktok_url=args.tiktok_url, state_dir=state_dir) as (base_url, emu),
    ):
        local = _local(args, config_text, base_url, emu, state_dir)
        try:
            _err(f"Re-running run {args.run_id}")
            extra = {"allow_mass_removal": True} if args.allow_mass_removal else None
            result = local.rerun(args.run_id, extra)
        finally:
            local.__exit__(None, None, None)
    return _finish(result, args, state_dir, local, emu)


def cmd_demo(args: argparse.Namespace) -> int:
    samples = resources.files("tiktok_destination_local") / "samples"
    workdir = Path(tempfile.mkdtemp(prefix="tiktok-destination-demo-"))
    try:
        for name in (
            "config.toml",
            "vip_customers_day1.csv",
            "vip_customers_day2.csv",
            "store_purchases.csv",
        ):
            (workdir / name).write_bytes((samples / name).read_bytes())
        _demo_export(workdir / "vip_customers_day2.csv", workdir / "vip_customers_day3")
        state_dir = Path(args.state_dir) if args.state_dir else workdir / "state"
        steps = [
            (
                "Day 1: a new audience from a customer export",
                "vip_customers_day1.csv",
                "acme_audiences",
                "vip_customers",
            ),
            (
                "Day 2: people joined and left; only the difference is sent",
                "vip_customers_day2.csv",
                "acme_audiences",
                "vip_customers",
            ),
            (
                "Day 2 again: the same file makes no mapping call at all",
                "vip_customers_day2.csv",
                "acme_audiences",
                "vip_customers",
            ),
            (
                "Day 3: the warehouse writes the export in 3 parts and a _SUCCESS marker; "
                "one run reads the folder, and the audience equals the union of the parts",
                "vip_customers_day3",
                "acme_audiences",
                "vip_customers",
            ),
            (
                "Offline events: in-store purchases (multi-item orders become one event)",
                "store_purchases.csv",
                "acme_offline",
                "store_purchases",
            ),
        ]
        status = 0
        for title, file, destination, template in steps:
            print(f"\n=== {title}")
            ns = argparse.Namespace(
                file=str(workdir / file),
                config=str(workdir / "config.toml"),
                destination=destination,
                template=template,
                tiktok_url=None,
                access_token=None,
                state_dir=str(state_dir),
                json=False,
                verbose=args.verbose,
                event_set_id=None,
                test_event_code=None,
                allow_mass_removal=False,
                wait_lock=0.0,
            )
            sys.stdout.flush()
            status = cmd_run(ns) or status
        if args.state_dir:
            print(f"\nDemo state (reports, rejects files, snapshots): {state_dir}")
        else:
            print("\nDemo state was temporary; pass --state-dir DIR to keep the reports.")
        return status
    finally:
        if not args.state_dir:
            shutil.rmtree(workdir, ignore_errors=True)


def _demo_export(day2: Path, folder: Path) -> None:
    """Day 2's people as a Spark-style export in 3 parts, two new people in the last one."""
    header, *rows = day2.read_text(encoding="utf-8").splitlines()
    rows += [f"new{i}@example.com," for i in (1, 2)]
    folder.mkdir()
    for number in range(3):
        part = rows[number::3]
        text = "\n".join([header, *part]) + "\n"
        (folder / f"part-{number:05d}-demo.c000.csv").write_text(text, encoding="utf-8")
    (folder / "_SUCCESS").write_bytes(b"")


def cmd_emulator(args: argparse.Namespace) -> int:
    from .emulator import serve_forever

    serve_forever(args.host, args.port)
    return 0


def cmd_auth_link(args: argparse.Namespace) -> int:
    """Print the TikTok authorization link for a credential of a deployed stack.

    Reads the app secret from Secrets Manager in the account and region of the environment
    (AWS_PROFILE / AWS_REGION; AWS_ENDPOINT_URL for a stand-in).
    """
    from tiktok_destination.config.settings import load_settings
    from tiktok_destination.oauth.link import cli_auth_link

    if args.state_bucket:
        os.environ["STATE_BUCKET"] = args.state_bucket
    if args.secret_prefix:
        os.environ["SECRET_PREFIX"] = args.secret_prefix
    redirect_uri = args.redirect_uri or os.environ.get("OAUTH_REDIRECT_URI", "")
    if not redirect_uri:
        raise DestinationError(
            "--redirect-uri is required: the OAuthCallbackUrl output of the deployed stack "
            "(sam list stack-outputs), or set OAUTH_REDIRECT_URI"
        )
    print(cli_auth_link(args.credential, redirect_uri, load_settings()))
    return 0


def cmd_schedules(args: argparse.Namespace) -> int:
    """Create, update and delete EventBridge Scheduler schedules for [orchestrations]."""
    from .schedules import sync_schedules

    config = load_config(
        _readable_file(args.config, "--config").read_bytes(), source=str(args.config)
    )
    changes = sync_schedules(
        config,
        state_machine_arn=args.state_machine_arn,
        role_arn=args.role_arn,
        group=args.group,
        dry_run=args.dry_run,
    )
    for change in changes:
        verb = (
            f"would {change.action}"
            if args.dry_run and change.action != "unchanged"
            else (change.action)
        )
        print(f"{verb:16} {change.name}  {change.expression or ''}".rstrip())
    if not changes:
        print("no orchestrations in the configuration and no schedules to remove")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tiktok-destination",
        description="Send S3 query output to TikTok custom audiences or offline events.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def local_options(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--allow-mass-removal",
            action="store_true",
            help="custom audiences: let this run remove more than max_removal_share of the "
            "audience (resolves MassRemovalBlocked once the file is known to be right)",
        )
        p.add_argument("--tiktok-url", help="TikTok API base URL (default: start the emulator)")
        p.add_argument(
            "--access-token",
            help="token for --tiktok-url "
            "(or TIKTOK_ACCESS_TOKEN); stored only in the local Secrets Manager",
        )
        p.add_argument(
            "--state-dir",
            default=str(DEFAULT_STATE_DIR),
            help="keeps the local state bucket between runs (default %(default)s)",
        )
        p.add_argument(
            "--wait-lock",
            type=float,
            default=0.0,
            metavar="SECONDS",
            help="when another command is using the state dir, wait up to this long for it "
            "(default: refuse at once)",
        )
        p.add_argument("--json", action="store_true", help="print only the report, as JSON")
        p.add_argument("--verbose", action="store_true", help="also print handler logs")

    run = sub.add_parser(
        "run",
        help="run one file, or a folder as one export in parts, through the state machine locally",
    )
    run.add_argument("file")
    run.add_argument("--config", required=True, help="the TOML configuration document")
    run.add_argument("--destination", required=True)
    run.add_argument("--template", required=True, help="the data template name")
    run.add_argument("--event-set-id", help="offline events: orchestration-level event set id")
    run.add_argument("--test-event-code", help="offline events: send as test events")
    local_options(run)
    run.set_defaults(func=cmd_run)

    rerun = sub.add_parser("rerun", help="re-run a run's input (resolve a workflow action)")
    rerun.add_argument("run_id")
    rerun.add_argument("--config", help="default: the configuration the run used")
    local_options(rerun)
    rerun.set_defaults(func=cmd_rerun)

    demo = sub.add_parser("demo", help="run the bundled samples end to end")
    demo.add_argument("--state-dir", help="keep the demo's state here (default: temporary)")
    demo.add_argument("--verbose", action="store_true")
    demo.set_defaults(func=cmd_demo)

    link = sub.add_parser("auth-link", help="print the TikTok authorization link for a credential")
    link.add_argument("--credential", required=True, help="a [credentials.NAME] of the config")
    link.add_argument("--redirect-uri", help="the deployed OAuthCallbackUrl stack output")
    link.add_argument(
        "--state-bucket", help="the StateBucketName stack output (default: STATE_BUCKET)"
    )
    link.add_argument("--secret-prefix", help="default: SECRET_PREFIX or tiktok-destination/")
    link.set_defaults(func=cmd_auth_link)

    sched = sub.add_parser(
        "schedules", help="sync EventBridge Scheduler schedules with the config's orchestrations"
    )
    sched.add_argument("--config", required=True)
    sched.add_argument("--state-machine-arn", required=True, help="the StateMachineArn output")
    sched.add_argument("--role-arn", required=True, help="the ScheduleRoleArn output")
    sched.add_argument("--group", default="default", help="schedule group (default %(default)s)")
    sched.add_argument("--dry-run", action="store_true", help="show the changes only")
    sched.set_defaults(func=cmd_schedules)

    emulator = sub.add_parser("emulator", help="serve the TikTok API emulator")
    emulator.add_argument("--host", default="127.0.0.1")
    emulator.add_argument("--port", type=int, default=8765)
    emulator.set_defaults(func=cmd_emulator)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except DestinationError as exc:
        _err(f"error: {exc.message}")
        return 2
    except FileNotFoundError as exc:
        _err(f"error: {exc.filename}: no such file")
        return 2
    except (IsADirectoryError, PermissionError) as exc:
        _err(f"error: {exc.filename}: {exc.strerror}")
        return 2
    except OSError as exc:
        if not disk_full(exc):
            raise
        # Any other write to the state dir (its lock, its logs): one line, not a traceback.
        state_dir = getattr(args, "state_dir", None)
        where = Path(state_dir) if state_dir else Path(exc.filename or ".").parent
        what = Path(exc.filename).name if exc.filename else "its files"
        _err(f"error: {cannot_write(where, what, exc.strerror or str(exc), exc)}")
        return 2
