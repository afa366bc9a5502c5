"""The removal guard per identifier type (issue 15.1).

A header typo (``emial,phone``) used to remove every email of an audience that also held
phones: exactly half of the members, so the guard on the total let it through. Now a plan
that removes more than ``max_removal_share`` of one type's members stops.
"""

from __future__ import annotations

import pytest

from tests.unit.test_removal_guard import make_run as guard_run
from tiktok_destination.audience import (
    TypeCounts,
    check_removal,
    types_over_share,
)
from tiktok_destination.errors import MassRemovalBlocked

# 1,000 people with an email and a phone: 2,000 members.
BOTH = {"EMAIL": TypeCounts(1000, 0, 0), "PHONE": TypeCounts(1000, 0, 0)}
# Day 2 without the email column: every email goes, the phones stay.
NO_EMAIL = {"EMAIL": TypeCounts(1000, 1000, 0), "PHONE": TypeCounts(1000, 0, 0)}


# ------------------------------------------------------------------ per type
def test_removing_every_email_of_half_the_audience_is_blocked_naming_email() -> None:
    # 1,000 of 2,000 is exactly max_removal_share: the total guard alone lets it through.
    with pytest.raises(MassRemovalBlocked) as info:
        check_removal(guard_run(), 2000, 1000, 0, by_type=NO_EMAIL)
    err = info.value
    (line,) = err.message.splitlines()
    for part in (
        "more than max_removal_share 0.5 of its EMAIL members",
        "EMAIL members 1,000, would remove 1,000 (100.0%), would add 0",
        "the whole audience: current size 2,000, would remove 1,000 (50.0%), would add 0",
        '"allow_mass_removal": true',
        "raise max_removal_share",
    ):
        assert part in line, line
    assert "PHONE members" not in line
    assert err.details == {
        "current_members": 2000,
        "would_remove": 1000,
        "would_add": 0,
        "max_removal_share": 0.5,
        "mass_removal_min_audience": 1000,
        "by_type": {
            "EMAIL": {"current_members": 1000, "would_remove": 1000, "would_add": 0},
            "PHONE": {"current_members": 1000, "would_remove": 0, "would_add": 0},
        },
        "types_over_share": ["EMAIL"],
    }


def test_over_the_share_in_total_and_of_a_type_names_both() -> None:
    by_type = {"EMAIL": TypeCounts(1000, 900, 0), "PHONE": TypeCounts(200, 100, 0)}
    with pytest.raises(MassRemovalBlocked) as info:
        check_removal(guard_run(), 1200, 1000, 0, by_type=by_type)
    line = info.value.message
    assert "of it and of its EMAIL members, so nothing was sent: current size 1,200" in line
    assert "EMAIL members 1,000, would remove 900 (90.0%)" in line
    assert "PHONE members" not in line  # exactly half of the phones: allowed
    assert info.value.details["types_over_share"] == ["EMAIL"]


@pytest.mark.parametrize(
    ("current", "by_type", "share", "min_audience", "over"),
    [
        pytest.param(2000, NO_EMAIL, 0.5, 1000, ["EMAIL"], id="every-email"),
        pytest.param(2000, BOTH, 0.5, 1000, [], id="nothing-removed"),
        pytest.param(
            2000, {"EMAIL": TypeCounts(1000, 500, 0)}, 0.5, 1000, [], id="exactly-the-share"
        ),
        pytest.param(
            2000, {"EMAIL": TypeCounts(1000, 501, 0)}, 0.5, 1000, ["EMAIL"], id="one-over"
        ),
        pytest.param(999, NO_EMAIL, 0.5, 1000, [], id="audience-under-the-minimum"),
        # The minimum is the audience's size: a small type of a large audience is guarded.
        pytest.param(
            5000, {"IDFA": TypeCounts(40, 40, 0)}, 0.5, 1000, ["IDFA"], id="small-type-of-big"
        ),
        pytest.param(2000, NO_EMAIL, 1.0, 1000, [], id="share-1-turns-it-off"),
        pytest.param(
            4000,
            {
                "AAID": TypeCounts(1000, 600, 0),
                "EMAIL": TypeCounts(1000, 1000, 0),
                "PHONE": TypeCounts(1000, 0, 0),
                "IDFA": TypeCounts(1000, 501, 0),
            },
            0.5,
            1000,
            ["EMAIL", "IDFA", "AAID"],
            id="in-type-order",
        ),
    ],
)
def test_types_over_share(
    current: int,
    by_type: dict[str, TypeCounts],
    share: float,
    min_audience: int,
    over: list[str],
) -> None:
    found = types_over_share(current, by_type, max_share=share, min_audience=min_audience)
    assert found == over


def test_a_type_over_the_share_is_let_through_by_allow_mass_removal() -> None:
    run = guard_run({"allow_mass_removal": True})
    assert check_removal(run, 2000, 1000, 0, by_type=NO_EMAIL) is True
    assert check_removal(guard_run(), 2000, 0, 0, by_type=BOTH) is False
