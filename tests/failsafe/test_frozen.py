"""Frozen-controller evidence (failsafe/frozen.py): pure tests, time passed in."""

from __future__ import annotations

from failsafe.frozen import FrozenDetector, Request, StatusSample

T0 = 1_750_000_000.0
CYCLES = {1: 60.0, 2: 90.0}


def cycle(p: int) -> float | None:
    return CYCLES.get(p)


def run(det: FrozenDetector, seconds: int, *, pattern: int = 1, flash: int = 2, moving: bool = True,
        uptime: str = "counting", request: Request | None = None, start: float = T0) -> list[str | None]:
    """One sample a second; the greens alternate every 10 s when ``moving``."""
    out = []
    for k in range(seconds + 1):
        t = start + k
        greens = (0b11 if (k // 10) % 2 else 0b1100) if moving else 0b11
        up = {"counting": int((t - T0 + 3600) * 100), "stopped": 360000, "none": None}[uptime]
        out.append(det.observe(StatusSample(t, greens, 0, 0, flash, pattern, up), cycle, request))
    return out


def test_a_running_plan_is_never_frozen() -> None:
    assert set(run(FrozenDetector(1.0), 600)) == {None}


def test_phases_still_for_longer_than_the_cycle_in_a_plan() -> None:
    got = run(FrozenDetector(1.0), 100, moving=False)
    first = next(k for k, why in enumerate(got) if why)
    assert 60 < first <= 63  # cycle 60 s + 2 periods
    assert "plan 1 (cycle 60 s)" in got[-1]  # type: ignore[operator]


def test_unknown_cycle_uses_the_ntcip_maximum() -> None:
    got = run(FrozenDetector(1.0), 300, pattern=7, moving=False)
    assert next(k for k, why in enumerate(got) if why) > 255


def test_no_uptime_tag_still_catches_a_plan_standing_still() -> None:
    assert run(FrozenDetector(1.0), 80, moving=False, uptime="none")[-1] is not None


def test_flash_free_standing_still_is_normal_for_ten_minutes() -> None:
    for pattern, flash in ((255, 3), (254, 2), (255, 6)):
        assert set(run(FrozenDetector(1.0), 600, pattern=pattern, flash=flash, moving=False)) == {None}


def test_uptime_standing_still_is_frozen_in_any_mode() -> None:
    for pattern, flash in ((255, 3), (254, 2), (1, 2)):
        got = run(FrozenDetector(1.0), 20, pattern=pattern, flash=flash, moving=pattern == 1, uptime="stopped")
        assert got[5] is None and "sysUpTime standing still" in (got[-1] or "")


def test_uptime_restarting_is_not_frozen() -> None:
    det = FrozenDetector(1.0)
    run(det, 10, pattern=255, flash=3, moving=False)
    # a reboot: the uptime starts again from 0 and counts
    got = [det.observe(StatusSample(T0 + 11 + k, 0, 0, 0, 7, 255, k * 100), cycle) for k in range(30)]
    assert set(got) == {None}


def test_flash_that_ignores_a_plan_request_past_three_cycles() -> None:
    """Frozen in flash with uptime counting: the central asks for plan 2 (cycle 90 s); still flash after 270 s."""
    req = Request(2, T0 + 10)
    got = run(FrozenDetector(1.0), 400, pattern=255, flash=3, moving=False, request=req)
    first = next(k for k, why in enumerate(got) if why)
    assert 10 + 270 < first <= 10 + 272
    assert "status still shows flash" in (got[-1] or "") and "pattern 2" in (got[-1] or "")


def test_a_request_that_is_followed_is_no_evidence() -> None:
    assert set(run(FrozenDetector(1.0), 600, pattern=255, flash=3, moving=False, request=Request(255, T0))) == {None}
    assert set(run(FrozenDetector(1.0), 600, pattern=2, request=Request(2, T0))) == {None}


def test_reset_forgets_the_history() -> None:
    det = FrozenDetector(1.0)
    run(det, 59, moving=False)
    det.reset()  # a comm gap
    assert set(run(det, 30, moving=False, start=T0 + 200)) == {None}
