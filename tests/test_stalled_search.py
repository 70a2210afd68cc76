"""A search whose trials cannot start says why, once, instead of waiting in silence."""

from distdqn.tools.stalled_search import StallWatch, shortfall

RAY_TRIAL = [{"CPU": 1.0}, {"CPU": 0.25}, {"CPU": 0.25}, {"CPU": 0.25}, {"CPU": 0.25}]  # a driver, four roles


def test_a_trial_that_fits_in_what_is_free_has_no_shortfall():
    assert shortfall(RAY_TRIAL, {"CPU": 2.0, "memory": 1e9}) is None


def test_the_shortfall_names_the_resource_the_amount_needed_and_what_is_held():
    assert shortfall(RAY_TRIAL, {"CPU": 1.0}) == ("CPU", 2.0, 1.0)
    assert shortfall([{"CPU": 1.0, "GPU": 1.0}], {"CPU": 4.0}) == ("GPU", 1.0, 0.0)


def test_trials_pending_with_none_running_are_reported_once_after_the_wait():
    """What the hung test saw: a leaked CPU left 1 of 2 free, and the ray-runtime trial needs 2."""
    asked = []
    watch = StallWatch(RAY_TRIAL, lambda: asked.append(1) or {"CPU": 1.0}, after_s=120)
    assert watch.check(["TERMINATED", "PENDING"], now=0.0) is None
    assert watch.check(["PENDING"], now=119.0) is None
    assert not asked  # the cluster is asked only once the wait is over
    warning = watch.check(["PENDING"], now=121.0)
    assert warning == (
        "distdqn: warning: no trial has started for 121 s: one trial needs 2 CPU and the Ray cluster has 1 free "
        "(held outside this search, or leaked by Ray: restart the cluster)"
    )
    assert watch.check(["PENDING"], now=500.0) is None  # once


def test_a_running_trial_or_free_room_is_no_stall():
    watch = StallWatch(RAY_TRIAL, lambda: {"CPU": 2.0}, after_s=10)
    assert watch.check(["PENDING"], now=0.0) is None
    assert watch.check(["PENDING"], now=50.0) is None  # room is free: Tune is about to start it
    busy = StallWatch(RAY_TRIAL, lambda: {"CPU": 0.0}, after_s=10)
    for second in range(0, 100, 5):  # one trial runs while the others wait their turn
        assert busy.check(["RUNNING", "PENDING"], now=float(second)) is None
    assert busy.check(["PENDING"], now=100.0) is None  # the clock starts when none runs
    assert busy.check(["PENDING"], now=111.0) is not None
