"""Offline events through the whole state machine: grouping, rejects, no double sends."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.conftest import EVENT_SET, write_csv
from tiktok_destination_local.cli import print_report
from tiktok_destination_local.emulator import TikTokEmulator
from tiktok_destination_local.runner import LocalDestination

pytestmark = pytest.mark.e2e

HEADER = (
    "event,event_id,email,phone,content_id,price,quantity,currency,value,event_channel,timestamp"
)


def iso(delta: timedelta) -> str:
    return (datetime.now(UTC) - delta).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_orders_grouped_bad_rows_rejected_counts_add_up_and_rerun_sends_nothing(
    local: LocalDestination, emulator: TikTokEmulator, tmp_path: Path
) -> None:
    recent = iso(timedelta(hours=3))
    rows = [
        # order A: three items, no agreed value -> sum of price x quantity = 10*1 + 5*2 + 2.5*4
        f"Purchase,A,ann@example.com,,sku1,10,1,USD,,in_store,{recent}",
        f"Purchase,A,ann@example.com,,sku2,5,2,USD,,in_store,{recent}",
        f"Purchase,A,ann@example.com,,sku3,2.5,4,USD,,in_store,{recent}",
        # order B: two items that agree on the order value
        f"Purchase,B,,+1 415 555 0101,sku4,30,1,EUR,50,website,{recent}",
        f"Purchase,B,,+1 415 555 0101,sku5,20,1,EUR,50,website,{recent}",
        # an exact duplicate of order B's first row: merged, not sent twice
        f"Purchase,B,,+1 415 555 0101,sku4,30,1,EUR,50,website,{recent}",
        # stale (40 days), bad event name, bad currency
        f"Purchase,C,cat@example.com,,sku6,9,1,USD,9,crm,{iso(timedelta(days=40))}",
        f"Purchse,D,dan@example.com,,sku7,9,1,USD,9,crm,{recent}",
        f"Purchase,E,eve@example.com,,sku8,9,1,USX,9,crm,{recent}",
        # a single-row lead without value
        f"Lead,F,fay@example.com,,,,,,,email,{recent}",
    ]
    path = write_csv(tmp_path / "orders.csv", HEADER, rows)
    local.put_config(_lenient_config())
    result = local.run_file(path, "acme_offline", "purchases")
    assert result.succeeded, result.cause

    keys = sorted(emulator.events_by_key)
    assert keys == [
        (EVENT_SET, "Lead", "F"),
        (EVENT_SET, "Purchase", "A"),
        (EVENT_SET, "Purchase", "B"),
    ]
    received = {e["event_id"]: e for e in emulator.received_events}
    order_a = received["A"]["properties"]
    assert [c["content_id"] for c in order_a["contents"]] == ["sku1", "sku2", "sku3"]
    assert order_a["value"] == pytest.approx(30.0)
    order_b = received["B"]["properties"]
    assert [c["content_id"] for c in order_b["contents"]] == ["sku4", "sku5"]
    assert order_b["value"] == pytest.approx(50.0)
    ann = hashlib.sha256(b"ann@example.com").hexdigest()
    assert received["A"]["user"]["email"] in (ann, [ann])

    report = result.report
    assert report is not None
    rows_part = report["rows"]
    assert rows_part["received"] == 10
    assert rows_part["rejected_by_reason"] == {
        "duplicate_row": 1,
        "stale_event": 1,
        "invalid_event": 1,
        "invalid_currency": 1,
    }
    assert rows_part["received"] == rows_part["rejected"] + rows_part["in_events_sent"]
    assert report["events"]["built"] == 3 and report["events"]["sent"] == 3
    assert report["events"]["by_event"] == {"Purchase": 2, "Lead": 1}
    assert report["events"]["value_method"]["sum_price_quantity"] == 1

    rejects = _rejects(local, report["run_id"])
    assert {r["row"] for r in rejects} == {"6", "7", "8", "9"}
    joined = "\n".join(",".join(r.values()) for r in rejects)
    assert "@example.com" not in joined
    assert "did you mean" in joined.lower()

    # The same input again: nothing is sent (the emulator's received log, not its dedup).
    sent = len(emulator.received_events)
    again = local.run_file(path, "acme_offline", "purchases")
    assert again.succeeded, again.cause
    assert len(emulator.received_events) == sent
    assert emulator.calls["event/track/"] == 1


def test_2500_events_go_out_in_exactly_three_requests(
    local: LocalDestination, emulator: TikTokEmulator, tmp_path: Path
) -> None:
    recent = iso(timedelta(hours=1))
    rows = [f"Purchase,o{i},p{i}@example.com,,sku,1,1,USD,1,website,{recent}" for i in range(2500)]
    path = write_csv(tmp_path / "many.csv", HEADER, rows)
    result = local.run_file(path, "acme_offline", "purchases")
    assert result.succeeded, result.cause
    assert emulator.calls["event/track/"] == 3
    assert len(emulator.events_by_key) == 2500
    assert result.report is not None and result.report["events"]["sent"] == 2500


def test_event_set_id_precedence_row_then_input_then_template(
    local: LocalDestination, emulator: TikTokEmulator, tmp_path: Path
) -> None:
    other = "7100000000000000002"
    row_level = "7100000000000000003"
    for event_set in (other, row_level):
        emulator.add_event_set("7000000000000000001", event_set, "more")
    recent = iso(timedelta(hours=1))
    path = write_csv(
        tmp_path / "sets.csv",
        "event,event_id,email,event_set_id,timestamp",
        [f"Lead,x1,a@example.com,{row_level},{recent}", f"Lead,x2,b@example.com,,{recent}"],
    )
    result = local.run_file(path, "acme_offline", "purchases", {"event_set_id": other})
    assert result.succeeded, result.cause
    assert (row_level, "Lead", "x1") in emulator.events_by_key
    assert (other, "Lead", "x2") in emulator.events_by_key


def test_event_rejected_by_tiktok_is_isolated_and_the_rest_sent(
    local: LocalDestination, emulator: TikTokEmulator, tmp_path: Path
) -> None:
    recent = iso(timedelta(hours=1))
    rows = [f"Lead,l{i},p{i}@example.com,,,,,,,email,{recent}" for i in range(8)]
    path = write_csv(tmp_path / "leads.csv", HEADER, rows)
    # TikTok refuses the whole request, then each first half down to one event: bisecting
    # isolates that event (row 1) in the rejects file and sends the other seven.
    emulator.fail_next("event/track/", code=40002, times=4)
    result = local.run_file(path, "acme_offline", "purchases")
    assert result.succeeded, result.cause
    assert len(emulator.events_by_key) == 7
    assert all(key[2] != "l0" for key in emulator.events_by_key)
    report = result.report
    assert report is not None
    assert report["events"]["rejected_by_tiktok"] == 1
    assert report["rows"]["rejected_by_reason"] == {"tiktok_rejected": 1}
    assert (
        report["rows"]["received"] == report["rows"]["rejected"] + report["rows"]["in_events_sent"]
    )
    rejects = _rejects(local, report["run_id"])
    assert [(r["row"], r["reason_code"]) for r in rejects] == [("1", "tiktok_rejected")]


def test_one_event_id_with_1001_people_sends_one_person_and_rejects_the_rest(
    local: LocalDestination, emulator: TikTokEmulator, tmp_path: Path
) -> None:
    recent = iso(timedelta(hours=1))
    rows = [f"Purchase,same,p{i}@example.com,,sku{i},1,1,USD,,crm,{recent}" for i in range(1001)]
    path = write_csv(tmp_path / "one-id.csv", HEADER, rows)
    # 1,000 of 1,001 rows rejected: sent only when the reject threshold allows it (below).
    local.put_config(_lenient_config(1.0))
    result = local.run_file(path, "acme_offline", "purchases")
    assert result.succeeded, result.cause

    (event,) = emulator.received_events
    assert event["user"] == {"email": hashlib.sha256(b"p0@example.com").hexdigest()}
    assert [c["content_id"] for c in event["properties"]["contents"]] == ["sku0"]
    report = result.report
    assert report is not None
    assert report["rows"]["rejected"] == 1000
    assert report["rows"]["rejected_by_reason"] == {"event_id_conflict": 1000}
    assert report["rows"]["in_events_sent"] == 1
    assert report["events"]["event_id_conflict_rows"] == 1000
    assert (report["events"]["built"], report["events"]["sent"]) == (1, 1)
    rejects = _rejects(local, report["run_id"])
    assert {r["reason_code"] for r in rejects} == {"event_id_conflict"}
    assert sorted(int(r["row"]) for r in rejects) == list(range(2, 1002))
    assert "@example.com" not in "\n".join(r["reason"] for r in rejects)


def test_out_of_range_numbers_are_rejected_rows_and_only_finite_json_is_sent(
    local: LocalDestination, emulator: TikTokEmulator, tmp_path: Path
) -> None:
    recent = iso(timedelta(hours=1))
    good = [f"Purchase,g{i},g{i}@example.com,,sku,2.5,2,USD,5,crm,{recent}" for i in range(6)]
    rows = [
        *good[:2],
        f"Purchase,v,v@example.com,,sku,1,1,USD,1e400,crm,{recent}",
        *good[2:4],
        f"Purchase,p,p@example.com,,sku,1e400,1,USD,,crm,{recent}",
        f"Purchase,q,q@example.com,,sku,1,1e30,USD,,crm,{recent}",
        f"Purchase,n,n@example.com,,sku,NaN,1,USD,,crm,{recent}",
        *good[4:],
    ]
    path = write_csv(tmp_path / "numbers.csv", HEADER, rows)
    result = local.run_file(path, "acme_offline", "purchases")
    assert result.succeeded, result.cause

    assert sorted(key[2] for key in emulator.events_by_key) == [f"g{i}" for i in range(6)]
    # allow_nan=False raises on anything non-finite that reached the emulator.
    json.dumps(emulator.received_events, allow_nan=False)
    assert {e["properties"]["value"] for e in emulator.received_events} == {5.0}
    report = result.report
    assert report is not None
    assert report["rows"]["rejected_by_reason"] == {
        "invalid_value": 1,
        "invalid_price": 2,
        "invalid_quantity": 1,
    }
    rejects = _rejects(local, report["run_id"])
    assert sorted((r["row"], r["column"]) for r in rejects) == [
        ("3", "value"),
        ("6", "price"),
        ("7", "quantity"),
        ("8", "price"),
    ]


def _lenient_config(reject_threshold: float = 0.6) -> str:
    from tests.conftest import CONFIG

    return CONFIG.replace("reject_threshold = 0.5", f"reject_threshold = {reject_threshold}")


def test_event_id_conflicts_over_the_reject_threshold_stop_the_run_before_any_event(
    local: LocalDestination, emulator: TikTokEmulator, tmp_path: Path
) -> None:
    recent = iso(timedelta(hours=1))
    # 12 rows: order "same" names 10 people (9 event_id_conflict rows, rejected only when
    # rows are grouped, after validate), two other orders are fine. 9 of 12 is over 0.5.
    rows = [f"Purchase,same,p{i}@example.com,,sku{i},1,1,USD,,crm,{recent}" for i in range(10)]
    rows += [f"Purchase,o{i},o{i}@example.com,,sku,1,1,USD,,crm,{recent}" for i in range(2)]
    path = write_csv(tmp_path / "conflicts.csv", HEADER, rows)
    result = local.run_file(path, "acme_offline", "purchases")
    assert result.status == "FAILED"
    assert result.error == "InputRejected"
    assert emulator.received_events == []
    assert emulator.calls["event/track/"] == 0
    report = result.report
    assert report is not None
    message = report["workflow_action"]["message"]
    assert "9 of 12 rows rejected (75.0%)" in message and "50.0%" in message
    assert "event_id_conflict (9 rows)" in message and "own event_id" in message
    assert report["rows"] == {
        "received": 12,
        "rejected": 9,
        "rejected_by_reason": {"event_id_conflict": 9},
    }
    rejects = _rejects(local, report["run_id"])
    assert sorted(int(r["row"]) for r in rejects) == list(range(2, 11))


def _rejects(local: LocalDestination, run_id: str) -> list[dict[str, str]]:
    out: list[dict[str, str]] = []
    for key in local.state_keys(f"runs/{run_id}/rejects/"):
        text = local.state_text(key) or ""
        out.extend(csv.DictReader(io.StringIO(text)))
    return out


def test_rerun_of_rows_without_timestamp_sends_nothing_twice(
    local: LocalDestination, emulator: TikTokEmulator, tmp_path: Path
) -> None:
    # Rows without a timestamp take the time of validation, which differs between
    # executions; the re-run must still reuse the first plan and send nothing.
    path = write_csv(
        tmp_path / "no-time.csv",
        "event,event_id,email",
        ["Lead,n1,a@example.com", "Lead,n2,b@x.io"],
    )
    assert local.run_file(path, "acme_offline", "purchases").succeeded
    first = len(emulator.received_events)
    time.sleep(1.1)  # so "now" (whole seconds) differs between the two validations
    again = local.run_file(path, "acme_offline", "purchases")
    assert again.succeeded, again.cause
    assert len(emulator.received_events) == first == 2


@pytest.mark.parametrize("delimiter", [",", ";"])
def test_missing_event_set_id_everywhere_stops_before_any_call(
    local: LocalDestination, emulator: TikTokEmulator, tmp_path: Path, delimiter: str
) -> None:
    from tests.conftest import CONFIG

    local.put_config(CONFIG.replace(f'event_set_id = "{EVENT_SET}"\n', ""))
    path = write_csv(
        tmp_path / "no-set.csv",
        delimiter.join(["event", "event_id", "email"]),
        [delimiter.join(["Lead", "z1", "a@example.com"])],
    )
    emulator.reset_counters()
    result = local.run_file(path, "acme_offline", "purchases")
    assert result.status == "FAILED"
    assert result.error == "ConfigurationError"
    assert "event_set_id column" in (result.cause or "")
    assert "[data_templates.purchases]" in (result.cause or "")
    assert sum(emulator.calls.values()) == 0, "no call to TikTok at all"


def test_an_invalid_phone_beside_a_valid_email_is_a_dropped_value_in_the_rejects_file(
    local: LocalDestination, emulator: TikTokEmulator, tmp_path: Path
) -> None:
    recent = iso(timedelta(hours=2))
    rows = [
        f"Purchase,A,ann@example.com,12345,sku1,10,1,USD,,in_store,{recent}",
        f"Purchase,B,bob@example.com,+1 415 555 0101 x12,sku2,10,1,USD,,in_store,{recent}",
        f"Purchase,C,cat@example.com,+1 415 555 0102,sku3,10,1,USD,,in_store,{recent}",
        # an exact duplicate of row 1: a rejected row of the grouping step's rejects file
        f"Purchase,A,ann@example.com,12345,sku1,10,1,USD,,in_store,{recent}",
    ]
    local.put_config(_lenient_config())
    result = local.run_file(
        write_csv(tmp_path / "e.csv", HEADER, rows), "acme_offline", "purchases"
    )
    assert result.succeeded, result.cause
    received = {e["event_id"]: e["user"] for e in emulator.received_events}
    # A and B go out with their email alone; C with both.
    assert set(received) == {"A", "B", "C"}
    assert "phone" not in received["A"] and "phone" not in received["B"]
    assert received["C"].get("phone")

    report = result.report
    assert report is not None
    rejects = _rejects(local, report["run_id"])
    assert sorted((r["row"], r["column"], r["reason_code"], r["kind"]) for r in rejects) == [
        ("1", "phone", "invalid_phone", "dropped_value"),
        ("2", "phone", "phone_extension", "dropped_value"),
        ("4", "", "duplicate_row", "rejected_row"),
        ("4", "phone", "invalid_phone", "dropped_value"),
    ]
    assert report["dropped_values"]["by_reason"] == {"invalid_phone": 2, "phone_extension": 1}
    assert report["rows"]["rejected"] == 1
    # The report's counts add up to the rejects files' lines, which hold no value.
    assert report["rows"]["rejected"] + report["dropped_values"]["total"] == len(rejects)
    joined = "\n".join(",".join(r.values()) for r in rejects)
    assert "12345" not in joined and "@example.com" not in joined
    # ...and the printed report names them too, for events as for audiences.
    printed = io.StringIO()
    print_report(report, printed)
    assert "dropped      invalid values in otherwise usable rows: " in printed.getvalue()
    assert "invalid_phone 2, phone_extension 1" in printed.getvalue()
