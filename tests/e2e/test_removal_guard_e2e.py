"""The removal guard through the whole state machine, and through the CLI.

Day 1 builds an audience of 1,200 members; day 2 is a file of 300 (250 of them known): a
truncated export. The run must stop with MassRemovalBlocked before any mapping call, with
the numbers; a re-run of the same input with allow_mass_removal mirrors the 300.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ADVERTISER, CONFIG, write_csv
from tiktok_destination.runs.workflow_actions import ACTIONS
from tiktok_destination_local.cli import main
from tiktok_destination_local.emulator import TikTokEmulator
from tiktok_destination_local.runner import LocalDestination, RunResult

pytestmark = pytest.mark.e2e

# Big batches: 1,200 adds are 3 mapping calls instead of 300.
GUARD_CONFIG = CONFIG.replace("mapping_batch_size = 4", "mapping_batch_size = 500")
DAY1 = [f"member{i}@example.com" for i in range(1200)]
# 250 stay, 50 join, 950 would be removed: 79% of 1,200.
DAY2 = DAY1[:250] + [f"joiner{i}@example.com" for i in range(50)]


def expected(addresses: list[str]) -> set[str]:
    # The addresses are already trimmed and lowercase, so normalization is the identity.
    return {"EMAIL_SHA256:" + hashlib.sha256(a.encode()).hexdigest() for a in addresses}


def csv_of(path: Path, addresses: list[str]) -> Path:
    return write_csv(path, "email", addresses)


def members(emu: TikTokEmulator) -> set[str]:
    (audience,) = emu.audiences(ADVERTISER)
    return set(audience["members"])


def assert_blocked_numbers(text: str) -> None:
    for part in ("current size 1,200", "would remove 950", "would add 50"):
        assert part in text, text


@pytest.mark.parametrize("diff_mode", ["inline", "map"])
def test_truncated_export_is_blocked_before_any_call_then_allowed_rerun_mirrors_it(
    local: LocalDestination,
    emulator: TikTokEmulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    diff_mode: str,
) -> None:
    if diff_mode == "map":
        # Every audience diffed by the DiffShards Map: the guard runs in CollectShards.
        monkeypatch.setenv("DIFF_INLINE_MEMBERS", "0")
    local.put_config(GUARD_CONFIG)
    day1 = local.run_file(csv_of(tmp_path / "day1.csv", DAY1), "acme_audiences", "vip")
    assert day1.succeeded, day1.cause
    assert members(emulator) == expected(DAY1)

    emulator.reset_counters()
    blocked = local.run_file(csv_of(tmp_path / "day2.csv", DAY2), "acme_audiences", "vip")
    assert blocked.status == "FAILED"
    assert blocked.error == "MassRemovalBlocked", blocked.cause
    # The Failed task's cause is Lambda's error payload: title, message, numbered steps.
    cause = json.loads(blocked.cause or "{}")["errorMessage"]
    assert cause.startswith("Mass removal blocked: "), cause
    assert_blocked_numbers(cause.splitlines()[0])
    assert emulator.calls["segment/mapping/"] == 0, "the guard must stop before any mapping"
    assert "MapAudienceBatches" not in blocked.states
    assert ("CollectShards" in blocked.states) == (diff_mode == "map")
    assert members(emulator) == expected(DAY1)
    # Nothing that a later plan could take for TikTok's state: no journal, no plan.
    assert [k for k in local.state_keys("audiences/") if "/pending/" in k] == []
    report = blocked.report
    assert report is not None and report["status"] == "failed"
    action = report["workflow_action"]
    assert action["action"] == "MassRemovalBlocked"
    assert action["steps"] == list(ACTIONS["MassRemovalBlocked"].steps)
    assert_blocked_numbers(action["message"])
    assert action["details"] == {
        "current_members": 1200,
        "would_remove": 950,
        "would_add": 50,
        "max_removal_share": 0.5,
        "mass_removal_min_audience": 1000,
        # Every member is an email here: the type is over the share as well.
        "by_type": {"EMAIL": {"current_members": 1200, "would_remove": 950, "would_add": 50}},
        "types_over_share": ["EMAIL"],
    }
    run_id = report["run_id"]
    assert local.state_keys(f"runs/{run_id}/plan/") == []

    # The flag belongs to one execution: a plain re-run is blocked again.
    again = local.rerun(run_id)
    assert again.error == "MassRemovalBlocked", again.cause
    assert emulator.calls["segment/mapping/"] == 0

    allowed = local.rerun(run_id, {"allow_mass_removal": True})
    assert allowed.succeeded, allowed.cause
    assert members(emulator) == expected(DAY2)
    report = allowed.report
    assert report is not None and report["run_id"] == run_id
    assert (report["members"]["removed"], report["members"]["added"]) == (950, 50)
    assert report["members"]["mass_removal_allowed"] is True


def test_max_removal_share_in_the_data_template_lets_the_same_file_through(
    local: LocalDestination, emulator: TikTokEmulator, tmp_path: Path
) -> None:
    local.put_config(GUARD_CONFIG)
    assert local.run_file(csv_of(tmp_path / "day1.csv", DAY1), "acme_audiences", "vip").succeeded
    # 950 / 1,200 is 79.2%: a template share of 0.8 lets it through, [settings]' 0.1 does not
    # matter because the template's value wins.
    local.put_config(
        GUARD_CONFIG.replace(
            'audience_name = "VIP customers"',
            'audience_name = "VIP customers"\nmax_removal_share = 0.8',
        ).replace("[settings]\n", "[settings]\nmax_removal_share = 0.1\n")
    )
    result = local.run_file(csv_of(tmp_path / "day2.csv", DAY2), "acme_audiences", "vip")
    assert result.succeeded, result.cause
    assert members(emulator) == expected(DAY2)
    assert result.report is not None
    assert "mass_removal_allowed" not in result.report["members"]


def test_cli_flags_pass_allow_mass_removal_into_the_execution_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # One batch per Map here (the local runner's stdout is process-wide, and parallel
    # children can leave it pointing at the handler log, where --json's report would go).
    config = tmp_path / "config.toml"
    config.write_text(CONFIG.replace("mapping_batch_size = 4", "mapping_batch_size = 10000"))
    day2_rows = DAY1[:300]
    state = ["--state-dir", str(tmp_path / "state"), "--json"]
    target = ["--config", str(config), "--destination", "acme_audiences", "--template", "vip"]

    def cli(*argv: str) -> tuple[int, dict]:
        code = main(list(argv))
        out, err = capsys.readouterr()
        assert out.strip(), f"no report on stdout; stderr: {err}"
        return code, json.loads(out)

    day1 = str(csv_of(tmp_path / "day1.csv", DAY1))
    day2 = str(csv_of(tmp_path / "day2.csv", day2_rows))
    code, report = cli("run", day1, *target, *state)
    assert code == 0, report
    code, report = cli("run", day2, *target, *state)
    assert code == 2
    assert report["workflow_action"]["action"] == "MassRemovalBlocked"
    assert report["workflow_action"]["details"]["would_remove"] == 900
    assert report["api"]["by_endpoint"].get("segment/mapping/", 0) == 0

    # rerun RUN_ID --allow-mass-removal resolves the blocked run. Only the state bucket
    # outlives a CLI process locally, so put the same file back in the inbox first (same
    # bytes, same ETag, same run id).
    original_rerun = LocalDestination.rerun

    def rerun_with_inbox(
        self: LocalDestination, run_id: str, extra: dict[str, Any] | None = None
    ) -> RunResult:
        self.drop(Path(day2), "acme_audiences", "vip")
        return original_rerun(self, run_id, extra)

    monkeypatch.setattr(LocalDestination, "rerun", rerun_with_inbox)
    code, report = cli("rerun", report["run_id"], "--allow-mass-removal", *state)
    assert code == 0, report
    assert (report["members"]["removed"], report["members"]["added"]) == (900, 0)
    emulator = TikTokEmulator()
    assert emulator.load(tmp_path / "state" / "emulator.json")
    assert members(emulator) == expected(day2_rows)

    # run --allow-mass-removal: back to 1,200 (300 members are exempt), then day 2 again.
    code, report = cli("run", day1, *target, *state)
    assert code == 0, report
    code, report = cli("run", day2, "--allow-mass-removal", *target, *state)
    assert code == 0, report
    assert report["members"]["mass_removal_allowed"] is True, report
    assert emulator.load(tmp_path / "state" / "emulator.json")
    assert len(members(emulator)) == 300, report


# ------------------------------------------------------------------ per identifier type
# Day 1: 30 people with an email and a phone (60 members, over the minimum set here); day 2
# the same rows under the header "contact,phone" (a name that is no near miss of email, which
# would stop the run earlier with a "did you mean"): every email would go, exactly half of
# the audience, so only the guard per type and the vanished-column check can stop it.
TYPES_CONFIG = GUARD_CONFIG.replace("[settings]\n", "[settings]\nmass_removal_min_audience = 50\n")
PEOPLE = [(f"Person{i}@Example.COM", f"+1 (415) 555-{i:04d}") for i in range(30)]


def people_csv(path: Path, header: str) -> Path:
    return write_csv(path, header, [f"{email},{phone}" for email, phone in PEOPLE])


def people_members(*, emails: bool) -> set[str]:
    """Normalized by hand: email lowercased, phone as "+" and its digits."""
    out = set()
    for email, phone in PEOPLE:
        digits = "".join(c for c in phone if c.isdigit())
        out.add("PHONE_SHA256:" + hashlib.sha256(f"+{digits}".encode()).hexdigest())
        if emails:
            out.add("EMAIL_SHA256:" + hashlib.sha256(email.lower().encode()).hexdigest())
    return out


def test_a_renamed_email_header_is_blocked_naming_email_then_allowed_rerun_goes_through(
    local: LocalDestination, emulator: TikTokEmulator, tmp_path: Path
) -> None:
    # Diffed inline, as an audience this small is; CollectShards runs the same collect_diff
    # (the test above covers the guard there).
    local.put_config(TYPES_CONFIG)
    day1 = local.run_file(people_csv(tmp_path / "day1.csv", "email,phone"), "acme_audiences", "vip")
    assert day1.succeeded, day1.cause
    assert members(emulator) == people_members(emails=True)

    emulator.reset_counters()
    blocked = local.run_file(
        people_csv(tmp_path / "day2.csv", "contact,phone"), "acme_audiences", "vip"
    )
    assert blocked.status == "FAILED"
    assert blocked.error == "MassRemovalBlocked", blocked.cause
    cause = json.loads(blocked.cause or "{}")["errorMessage"].splitlines()[0]
    for part in (
        "has no email column",
        f"(run {day1.report['run_id'] if day1.report else '?'} of ",
        "left 30 EMAIL members at TikTok",
        'columns = { email = "<the header name>" }',
        "EMAIL members 30, would remove 30 (100.0%)",
    ):
        assert part in cause, cause
    assert emulator.calls["segment/mapping/"] == 0
    assert members(emulator) == people_members(emails=True)
    assert blocked.report is not None
    details = blocked.report["workflow_action"]["details"]
    assert details["types_over_share"] == ["EMAIL"]
    assert details["types_without_column"] == {"EMAIL": 30}
    assert details["by_type"]["EMAIL"] == {
        "current_members": 30,
        "would_remove": 30,
        "would_add": 0,
    }

    allowed = local.rerun(blocked.report["run_id"], {"allow_mass_removal": True})
    assert allowed.succeeded, allowed.cause
    assert members(emulator) == people_members(emails=False)
    assert allowed.report is not None
    assert allowed.report["members"]["removed"] == 30
    assert allowed.report["members"]["mass_removal_allowed"] is True


# ------------------------------------------------------------------ header-only file
def test_a_header_only_file_empties_the_audience_only_with_allow_mass_removal(
    local: LocalDestination, emulator: TikTokEmulator, tmp_path: Path
) -> None:
    local.put_config(TYPES_CONFIG)
    day1 = local.run_file(people_csv(tmp_path / "day1.csv", "email,phone"), "acme_audiences", "vip")
    assert day1.succeeded, day1.cause
    assert members(emulator) == people_members(emails=True)

    emulator.reset_counters()
    empty = write_csv(tmp_path / "day2.csv", "email,phone", [])
    blocked = local.run_file(empty, "acme_audiences", "vip")
    assert blocked.status == "FAILED"
    assert blocked.error == "InputRejected", blocked.cause
    assert blocked.report is not None
    message = blocked.report["workflow_action"]["message"]
    assert "has a header but no data rows" in message
    assert '"allow_mass_removal": true' in message
    assert emulator.calls["segment/mapping/"] == 0
    assert members(emulator) == people_members(emails=True)

    # Was refused the same way even with the flag: an audience could not be emptied at all.
    allowed = local.rerun(blocked.report["run_id"], {"allow_mass_removal": True})
    assert allowed.succeeded, allowed.cause
    assert members(emulator) == set()
    assert allowed.report is not None
    assert allowed.report["members"]["removed"] == 60
    assert allowed.report["members"]["mass_removal_allowed"] is True
