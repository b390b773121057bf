"""What a claim makes of a key another driver stored while this one was planning."""

from __future__ import annotations

from memento.store.leases import decide


def test_a_row_written_before_the_plan_s_clock_but_committed_after_is_finished() -> None:
    # Another driver's transaction took its time stamp (updated=10.0) before this driver read
    # the store's clock (since=10.5) but committed after this driver's look-up: the plan saw
    # no row. Compared by clock, the row looks older than the plan and the key would run
    # twice; compared with what the plan saw, it is finished.
    stored = {"k": (10.0, "other-run")}
    assert decide("mine", ["k"], stored, {}, since=10.5, now=11.0).claimed == ["k"]
    claim = decide("mine", ["k"], stored, {}, since=10.5, now=11.0, known={})
    assert claim.finished == ["k"] and claim.claimed == []


def test_a_row_the_plan_saw_is_claimed_unless_it_changed() -> None:
    stored = {"k": (5.0, "other-run")}  # a failed result from earlier: run it again
    claim = decide("mine", ["k"], stored, {}, since=10.5, now=11.0, known={"k": 5.0})
    assert claim.claimed == ["k"]
    rewritten = {"k": (12.0, "other-run")}  # another driver re-ran it meanwhile
    claim = decide("mine", ["k"], rewritten, {}, since=10.5, now=11.0, known={"k": 5.0})
    assert claim.finished == ["k"]


def test_this_run_s_own_rows_never_count_as_finished() -> None:
    claim = decide("mine", ["k"], {"k": (12.0, "mine")}, {}, since=10.5, now=11.0, known={})
    assert claim.claimed == ["k"]
