"""One app-wide rate limit for every Map child of every run, on the local default.

TikTok counts calls per developer app. Two audiences syncing side by side start Map
children (each its own Lambda, each its own client) that must share the app's QPS: the
shared limiter (DynamoDB, see rate_limit.py) spaces every call of every child of both runs,
and the emulator refuses an 11th call in any 1-second window. Issue 15 saw 40100 in 1 of 9
trials; a few trials run here, 50 in ``make bench`` (tests/bench/bench_rate_limit.py, which
runs this same scenario).
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import pytest

from tests.conftest import ADVERTISER, write_csv
from tiktok_destination_local.emulator import TikTokEmulator
from tiktok_destination_local.runner import LocalDestination, RunResult

pytestmark = pytest.mark.e2e

BATCH = 50
QPS = 10
PEOPLE = 8 * BATCH  # eight add batches per audience

CONFIG = f"""
[settings]
mapping_batch_size = {BATCH}
tiktok_qps = {QPS}

[credentials.acme]

[destinations.acme_audiences]
credential = "acme"
advertiser_id = "{ADVERTISER}"
kind = "custom_audience"

[data_templates.vip]
destination = "acme_audiences"
audience_name = "VIP customers"
user_id_types = ["EMAIL"]

[data_templates.lapsed]
destination = "acme_audiences"
audience_name = "Lapsed customers"
user_id_types = ["EMAIL"]
"""


def emails(prefix: str) -> list[str]:
    return [f"{prefix}{i}@Example.com" for i in range(PEOPLE)]


def expected(rows: list[str]) -> set[str]:
    # Hand-normalized (lowercase), hashed with hashlib: independent of the product.
    return {"EMAIL_SHA256:" + hashlib.sha256(e.lower().encode()).hexdigest() for e in rows}


def sync_two_audiences(
    local: LocalDestination, emulator: TikTokEmulator, tmp_path: Path
) -> list[RunResult]:
    """Two audience runs started together at tiktok_qps = QPS against a TikTok enforcing it."""
    local.put_config(CONFIG)
    emulator.qps_limit = QPS  # TikTok's limit for the app, across every token and caller
    vip, lapsed = emails("vip"), emails("lapsed")
    started = [
        local.begin(
            local.drop(write_csv(tmp_path / "vip.csv", "email", vip), "acme_audiences", "vip")
        ),
        local.begin(
            local.drop(
                write_csv(tmp_path / "lapsed.csv", "email", lapsed), "acme_audiences", "lapsed"
            )
        ),
    ]
    return [local.wait(arn) for arn in started]


@pytest.mark.parametrize("trial", range(2))
def test_two_audiences_synced_together_stay_under_the_apps_qps(
    local: LocalDestination, emulator: TikTokEmulator, tmp_path: Path, trial: int
) -> None:
    results = sync_two_audiences(local, emulator, tmp_path)
    assert all(r.succeeded for r in results), [r.cause for r in results]
    vip, lapsed = emails("vip"), emails("lapsed")

    limited = [entry for entry in emulator.calls_log if entry[2] == 40100]
    assert limited == [], f"{len(limited)} of {len(emulator.calls_log)} calls were rate limited"
    batches = 2 * math.ceil(PEOPLE / BATCH)
    assert emulator.calls["segment/mapping/"] == batches, "each batch sent once, none retried"
    members = {a["name"]: a["members"] for a in emulator.audiences(ADVERTISER)}
    assert members == {"VIP customers": expected(vip), "Lapsed customers": expected(lapsed)}

    # Each run's Map exported its children's results to S3 (ResultWriter) rather than
    # collecting them into the state, whose 256 KiB a large audience's batches would pass.
    exported = [k for k in local.state_keys("map-results/") if k.endswith("/manifest.json")]
    assert len(exported) == 2, exported
    assert all(r.output and "MapRunArn" not in json.dumps(r.output) for r in results)
