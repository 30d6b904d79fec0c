"""Send-window arithmetic in the lead's own zone, across daylight-saving changes."""

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from leadloop.domain.cadence import SendWindow, check_timezone
from leadloop.domain.schedule import DemoClock, in_window, next_send_time

WEEKDAYS_9_17 = SendWindow()


def local(moment: datetime, zone: str) -> datetime:
    return moment.astimezone(ZoneInfo(zone))


def test_inside_the_window_sends_now() -> None:
    now = datetime(2027, 3, 26, 8, 0, tzinfo=UTC)  # Friday 10:00 in Athens
    assert next_send_time(now, WEEKDAYS_9_17, "Europe/Athens") == now


def test_friday_evening_waits_for_monday_morning_across_dst() -> None:
    # Athens moves to summer time on Sunday 28 March 2027
    friday_night = datetime(2027, 3, 26, 20, 0, tzinfo=UTC)
    monday = next_send_time(friday_night, WEEKDAYS_9_17, "Europe/Athens")
    assert local(monday, "Europe/Athens").strftime("%a %H:%M %Z") == "Mon 09:00 EEST"
    assert monday == datetime(2027, 3, 29, 6, 0, tzinfo=UTC)


def test_los_angeles_before_and_after_dst() -> None:
    before = next_send_time(datetime(2027, 3, 12, 20, 0, tzinfo=UTC), WEEKDAYS_9_17, "America/Los_Angeles")
    after = next_send_time(datetime(2027, 3, 15, 1, 0, tzinfo=UTC), WEEKDAYS_9_17, "America/Los_Angeles")
    assert local(before, "America/Los_Angeles").strftime("%a %H:%M %Z") == "Fri 12:00 PST"
    assert local(after, "America/Los_Angeles").strftime("%a %H:%M %Z") == "Mon 09:00 PDT"


def test_window_inside_a_dst_gap_moves_to_the_next_week() -> None:
    window = SendWindow(days=["sun"], start=time(3, 15), end=time(3, 45))
    moment = next_send_time(datetime(2027, 3, 27, 20, 0, tzinfo=UTC), window, "Europe/Athens")
    assert local(moment, "Europe/Athens").date().isoformat() == "2027-04-04"
    assert in_window(moment, window, "Europe/Athens")


@pytest.mark.parametrize("zone", ["Europe/Athens", "America/Los_Angeles", "Asia/Kolkata", "Pacific/Chatham"])
def test_result_is_always_inside_the_window_and_not_before(zone: str) -> None:
    start = datetime(2027, 1, 1, tzinfo=UTC)
    for hours in range(0, 24 * 400, 7):
        earliest = start + timedelta(hours=hours)
        moment = next_send_time(earliest, WEEKDAYS_9_17, zone)
        assert moment >= earliest
        assert in_window(moment, WEEKDAYS_9_17, zone)
        assert moment - earliest < timedelta(days=4)


def test_unknown_zone() -> None:
    with pytest.raises(ValueError, match="unknown time zone 'Mars/Olympus'"):
        check_timezone("Mars/Olympus")


def test_demo_clock() -> None:
    origin = datetime(2027, 1, 1, tzinfo=UTC)
    clock = DemoClock(origin, 86400)
    assert clock.cadence_time(origin + timedelta(seconds=2)) == origin + timedelta(days=2)
    assert clock.real_delay(origin, origin + timedelta(days=3)) == timedelta(seconds=3)
