"""The local CLI survives kill -9, a full disk and a second CLI; rerun and --json work.

Most tests drive real ``python -m tiktok_destination_local`` processes on a state dir in tmp_path.
"TikTok" is either the CLI's own emulator (its state in ``emulator.json``) or an emulator in
this test process (``--tiktok-url``), which, like the real service, never forgets what it
acknowledged however the CLI dies.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tiktok_destination_local import cli
from tiktok_destination_local import state_dir as state_dir_module
from tiktok_destination_local.emulator import TikTokEmulator
from tiktok_destination_local.state_dir import KILL_AFTER_ENV

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
ADVERTISER = "7000000000000000001"
TOKEN = "durability-token"
CONFIG = f"""
[settings]
mapping_batch_size = 4

[credentials.acme]

[destinations.acme_audiences]
credential = "acme"
advertiser_id = "{ADVERTISER}"
kind = "custom_audience"

[data_templates.vip]
destination = "acme_audiences"
audience_name = "VIP customers"
user_id_types = ["EMAIL"]
"""
A = range(0, 24)  # 6 batches of 4 on a fresh audience
B = range(12, 36)  # from A: 12 adds and 12 removals, 6 batches


def expected(people: range) -> set[str]:
    return {
        "EMAIL_SHA256:" + hashlib.sha256(f"person{i}@example.com".encode()).hexdigest()
        for i in people
    }


def cli_process(
    args: list[str], *, kill_after: str | None = None, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    environment = {k: v for k, v in os.environ.items() if k != KILL_AFTER_ENV}
    environment["PYTHONPATH"] = os.pathsep.join(
        [
            str(ROOT / "layers" / "tiktok_destination"),
            str(ROOT / "local"),
            environment.get("PYTHONPATH", ""),
        ]
    )
    environment.update(env or {})
    if kill_after:
        environment[KILL_AFTER_ENV] = kill_after
    return subprocess.Popen(
        [sys.executable, "-m", "tiktok_destination_local", *args],
        cwd=ROOT,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def cli_run(args: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    proc = cli_process(args, **kwargs)
    stdout, stderr = proc.communicate(timeout=300)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


class Workspace:
    """One state dir, files A and B, and the TikTok the CLI talks to."""

    def __init__(self, root: Path, tiktok: TikTokEmulator | None = None):
        root.mkdir(parents=True, exist_ok=True)
        self.state_dir = root / "state"
        self.config = root / "config.toml"
        self.config.write_text(CONFIG)
        self.files = {}
        for name, people in (("A", A), ("B", B)):
            path = root / f"vip_{name}.csv"
            path.write_text("email\n" + "".join(f"person{i}@example.com\n" for i in people))
            self.files[name] = path
        self.tiktok = tiktok

    def options(self) -> list[str]:
        options = ["--config", str(self.config), "--state-dir", str(self.state_dir), "--json"]
        if self.tiktok is not None:
            options += ["--tiktok-url", str(self.tiktok.base_url), "--access-token", TOKEN]
        return options

    def run_args(self, name: str) -> list[str]:
        target = ["--destination", "acme_audiences", "--template", "vip"]
        return ["run", str(self.files[name]), *target, *self.options()]

    def run(self, name: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return cli_run(self.run_args(name), **kwargs)

    def rerun(self, run_id: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return cli_run(["rerun", run_id, *self.options()], **kwargs)

    def killed(self, name: str, kill_after: str) -> str | None:
        """Run file ``name`` and SIGKILL it at ``kill_after``; the run id it showed, if any."""
        proc = self.run(name, kill_after=kill_after)
        assert proc.returncode == -signal.SIGKILL, (
            f"the run was not killed at {kill_after} (exit {proc.returncode}):\n{proc.stderr}"
        )
        found = re.search(r"run id (\w+)", proc.stderr)
        return found.group(1) if found else None

    def audience(self) -> set[str]:
        if self.tiktok is not None:
            found = self.tiktok.audiences(ADVERTISER)
        else:
            emulator = TikTokEmulator()
            assert emulator.load(self.state_dir / "emulator.json")
            found = emulator.audiences(ADVERTISER)
        assert len(found) == 1, f"expected one audience, found {len(found)}"
        members: set[str] = found[0]["members"]
        return members

    def converged(self, proc: subprocess.CompletedProcess[str], people: range) -> None:
        """The run succeeded, printed its report as JSON, and TikTok holds exactly the file."""
        assert proc.returncode == 0, proc.stderr
        assert "Traceback" not in proc.stderr
        report = json.loads(proc.stdout)  # --json: stdout is the report and nothing else
        assert report["status"] == "succeeded"
        assert report["members"]["in_file"] == len(people)
        assert self.audience() == expected(people)


def external_tiktok() -> TikTokEmulator:
    emulator = TikTokEmulator()
    emulator.add_advertiser(ADVERTISER, "Acme")
    emulator.add_token(TOKEN, [ADVERTISER])
    emulator.start()
    return emulator


def test_kill_9_at_any_point_then_run_again_converges(tmp_path: Path) -> None:
    """Five kill points over two state dirs, each followed by a run that must converge.

    Kill points name the key written just before the SIGKILL: ``N:/done/`` is after the Nth
    done marker (mid-Map), ``1:/pending/`` after the journal that says TikTok may now hold
    the run's changes, ``1:snapshot.json`` after the commit but before the journal is removed.
    """

    def real_tiktok_chain() -> None:
        # TikTok keeps everything: a lost journal shows as a wrong audience.
        tiktok = external_tiktok()
        try:
            ws = Workspace(tmp_path / "external", tiktok)
            run_id = ws.killed("A", "3:/done/")  # the first run, audience just created
            assert run_id, "the run id is shown before any batch is sent"
            ws.converged(ws.rerun(run_id), A)  # rerun RUN_ID after a crash
            ws.killed("B", "2:/done/")
            ws.converged(ws.run("A"), A)  # another file next: the killed run's adds go
            ws.killed("B", "1:/pending/")
            ws.converged(ws.run("A"), A)
        finally:
            tiktok.stop()

    def own_emulator_chain() -> None:
        # The CLI's emulator must keep what it acknowledged across the kill as well.
        ws = Workspace(tmp_path / "own")
        ws.converged(ws.run("A"), A)
        run_id = ws.killed("B", "4:/done/")
        assert run_id
        ws.converged(ws.rerun(run_id), B)
        ws.killed("A", "1:snapshot.json")
        ws.converged(ws.run("B"), B)

    with ThreadPoolExecutor(max_workers=2) as pool:
        for chain in [pool.submit(real_tiktok_chain), pool.submit(own_emulator_chain)]:
            chain.result()


def test_rerun_after_a_failed_run_sends_the_rest(tmp_path: Path) -> None:
    tiktok = external_tiktok()
    try:
        ws = Workspace(tmp_path, tiktok)
        tiktok.fail_next("segment/audience/", http_status=503, times=10_000)
        # A refused create may still be applied: the audience is looked up for twice the
        # client's timeout before the next create, so a short timeout keeps the test short.
        failed = ws.run("A", env={"TIKTOK_MAX_RETRIES": "0", "TIKTOK_TIMEOUT_SECONDS": "0.5"})
        assert failed.returncode == 2, failed.stderr
        assert "TikTokUnavailable" in failed.stderr
        assert "Traceback" not in failed.stderr
        (run_dir,) = (ws.state_dir / "state-bucket" / "runs").iterdir()
        tiktok.clear_faults()
        ws.converged(ws.rerun(run_dir.name), A)
        assert f"run id {run_dir.name}" in failed.stderr  # shown as the run started
    finally:
        tiktok.stop()


def test_a_second_command_on_a_state_dir_in_use_refuses_or_waits(tmp_path: Path) -> None:
    tiktok = external_tiktok()
    tiktok.latency = 0.5  # a slower TikTok keeps the first run busy while the others start
    try:
        ws = Workspace(tmp_path, tiktok)
        first = cli_process(ws.run_args("A"))
        lock = ws.state_dir / "lock"
        deadline = time.monotonic() + 120
        while not (lock.exists() and "pid" in lock.read_text()):
            assert first.poll() is None and time.monotonic() < deadline, "the lock was not taken"
            time.sleep(0.05)

        refused = ws.run("B")
        assert first.poll() is None, "the first run ended before the second one tried"
        assert refused.returncode == 2
        assert refused.stderr.strip().splitlines() == [
            f"error: the state dir {ws.state_dir} is in use by `tiktok-destination run` "
            f"(pid {first.pid}); wait for it to finish, pass --wait-lock SECONDS to wait "
            "for it, or use another --state-dir"
        ]

        waiting = cli_process([*ws.run_args("B"), "--wait-lock", "300"])
        first_out, first_err = first.communicate(timeout=300)
        assert first.returncode == 0, first_err
        assert json.loads(first_out)["status"] == "succeeded"
        waited_out, waited_err = waiting.communicate(timeout=300)
        assert "waiting up to 300 s for `tiktok-destination run`" in waited_err
        # It ran after the first one, on the state the first one left: B's diff from A.
        ws.converged(
            subprocess.CompletedProcess(waiting.args, waiting.returncode, waited_out, waited_err),
            B,
        )
        assert json.loads(waited_out)["members"]["removed"] == len(set(A) - set(B))
    finally:
        tiktok.stop()


def test_disk_full_fails_with_one_line_keeps_the_state_and_converges_next_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = Workspace(tmp_path)
    assert cli.main(ws.run_args("A")) == 0
    snapshot_files = list((ws.state_dir / "state-bucket").rglob("snapshot.json"))
    assert len(snapshot_files) == 1
    snapshot_a = snapshot_files[0].read_bytes()
    capsys.readouterr()

    real_write = state_dir_module._write_file
    after_journal: int | None = None

    def fills_up(path: Path, data: bytes, partial_dir: Path) -> None:
        # Counted from the journal, not from the start: how many files a plan writes (one
        # per shard and set) is not what this test is about.
        nonlocal after_journal
        if after_journal is not None:
            after_journal += 1
            if after_journal > 6:  # past the plan and its journal, a few batches into the Map
                raise OSError(errno.ENOSPC, "No space left on device")
        real_write(path, data, partial_dir)
        if after_journal is None and "/pending/" in str(path):
            after_journal = 0

    monkeypatch.setattr(state_dir_module, "_write_file", fills_up)
    assert cli.main(ws.run_args("B")) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    message = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(message) == 1, err
    assert f"the local state dir {ws.state_dir}: No space left on device" in message[0]
    assert "free some space there, then run the same command again" in message[0]
    # What was written before the disk filled up is intact: the journal that says TikTok may
    # hold B's changes, and A's committed snapshot.
    assert list((ws.state_dir / "state-bucket").rglob("pending/*.json"))
    assert snapshot_files[0].read_bytes() == snapshot_a

    monkeypatch.undo()
    assert cli.main(ws.run_args("B")) == 0
    capsys.readouterr()
    assert ws.audience() == expected(B)


def _no_space(*_args: Any, **_kwargs: Any) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


def _emulator_fills_up_after(saves: int) -> Any:
    real_save = TikTokEmulator.save
    done = 0

    def save(self: TikTokEmulator, path: Path | str) -> None:
        nonlocal done
        done += 1
        if done > saves:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_save(self, path)

    return save


def _log_file_cannot_open(state_dir: Path, verbose: bool) -> Any:
    raise OSError(errno.ENOSPC, "No space left on device", str(state_dir / "logs/handlers.log"))


@pytest.mark.parametrize(
    ("target", "name", "replacement", "names"),
    [
        # the emulator's first save, as with about 120 KB free: was a Python traceback
        pytest.param(TikTokEmulator, "save", _no_space, "emulator.json", id="emulator-start"),
        # the emulator cannot store a mapping: it answers 503 until the run gives up
        pytest.param(TikTokEmulator, "save", None, "emulator.json", id="emulator-mid"),
        pytest.param(cli, "_log_stream", _log_file_cannot_open, "handlers.log", id="log-file"),
    ],
)
def test_a_full_disk_at_any_write_is_one_error_line(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    target: Any,
    name: str,
    replacement: Any,
    names: str,
) -> None:
    ws = Workspace(tmp_path)
    if replacement is None:
        replacement = _emulator_fills_up_after(1)  # saved once at the start, then full
    monkeypatch.setattr(target, name, replacement)
    # The emulator answers 503 to a create it cannot store, and a create whose answer is
    # lost is looked up for twice the client's timeout: a short one keeps the test short.
    monkeypatch.setenv("TIKTOK_TIMEOUT_SECONDS", "0.5")
    code = cli.main(ws.run_args("A"))
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    assert f"to the local state dir {ws.state_dir}: No space left on device" in lines[0]
    assert names in lines[0]
    assert "free some space there, then run the same command again" in lines[0]


def test_a_directory_or_unreadable_input_is_one_line_and_exit_2(tmp_path: Path) -> None:
    ws = Workspace(tmp_path)
    loop = tmp_path / "loop.csv"
    loop.symlink_to(tmp_path / "loop.csv")  # even root cannot read it
    target = ["--destination", "acme_audiences", "--template", "vip"]
    state = ["--state-dir", str(ws.state_dir)]
    on_file = ["--state-dir", str(ws.config)]  # a file where the state dir should be
    empty = tmp_path / "empty-export"
    empty.mkdir()
    cases = [
        # a folder is an export in parts: one without files is refused before anything starts
        (["run", str(empty), "--config", str(ws.config), *target, *state], "with no files"),
        (["run", str(ws.files["A"]), "--config", str(tmp_path), *target, *state], "directory"),
        (["run", str(loop), "--config", str(ws.config), *target, *state], "cannot be read"),
        (["rerun", "0123456789abcdef", "--config", str(tmp_path), *state], "is a directory"),
        (["run", str(ws.files["A"]), "--config", str(ws.config), *target, *on_file], "cannot use"),
    ]
    for args, reason in cases:
        proc = cli_run(args)
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and reason in lines[0], lines
    assert not ws.state_dir.exists(), "nothing started"


def test_a_configuration_error_of_the_environment_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Refused by the Lambdas' settings, in Preflight: was printed as the state machine's
    # JSON error ({"errorType": …, "errorMessage": …}).
    monkeypatch.setenv("TIKTOK_QPS", "0.001")
    ws = Workspace(tmp_path)
    assert cli.main(ws.run_args("A")) == 2
    err = capsys.readouterr().err
    assert "{" not in err and "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert lines == [
        "error: Configuration error: environment variable TIKTOK_QPS='0.001' must be a number "
        "of at least 0.1 (calls per second to TikTok); set the template parameter TikTokQps, "
        "e.g. 10"
    ], err
    assert "run failed" not in err
