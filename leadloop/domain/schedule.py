"""Send-window arithmetic in a lead's own time zone, and the demo-speed clock (pure functions)."""

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from leadloop.domain.cadence import WEEKDAYS, SendWindow


def _local(day: datetime, hour_minute: tuple[int, int], zone: ZoneInfo, *, closing: bool) -> datetime:
    """A wall-clock time on a local day, in UTC.

    A wall time inside a DST gap does not exist: an opening moves after the gap and a closing
    before it, so a window never reaches into hours that the day does not have.
    """
    naive = datetime(day.year, day.month, day.day, *hour_minute)
    moment = naive.replace(tzinfo=zone).astimezone(UTC)
    if moment.astimezone(zone).replace(tzinfo=None) != naive and closing:
        moment = naive.replace(tzinfo=zone, fold=1).astimezone(UTC)
    return moment


def next_send_time(earliest: datetime, window: SendWindow, zone_name: str) -> datetime:
    """The first moment at or after `earliest` inside the send window, as UTC."""
    zone = ZoneInfo(zone_name)
    local = earliest.astimezone(zone)
    days = {WEEKDAYS.index(d) for d in window.days}
    start = (window.start.hour, window.start.minute)
    end = (window.end.hour, window.end.minute)
    for offset in range(15):
        day = (local + timedelta(days=offset)).date()
        day_dt = datetime(day.year, day.month, day.day)
        if day.weekday() not in days:
            continue
        opens = _local(day_dt, start, zone, closing=False)
        closes = _local(day_dt, end, zone, closing=True)
        if opens >= closes:  # the whole window falls in a DST gap that day
            continue
        if earliest < opens:
            return opens
        if earliest < closes:
            return earliest.astimezone(UTC)
    raise AssertionError("a send window with at least one day opens within two weeks")


def add_business_time(start: datetime, duration: timedelta, hours: SendWindow, zone_name: str) -> datetime:
    """The moment `duration` of business time (inside `hours`, in the zone) after `start`, as UTC.

    A response deadline of 4 business hours set on Friday 16:00 falls on Monday 12:00.
    """
    zone = ZoneInfo(zone_name)
    days = {WEEKDAYS.index(d) for d in hours.days}
    begin, end = (hours.start.hour, hours.start.minute), (hours.end.hour, hours.end.minute)
    left = duration
    moment = start.astimezone(UTC)
    for _ in range(3700):  # ten years of days: far beyond any SLA
        day = moment.astimezone(zone).date()
        day_dt = datetime(day.year, day.month, day.day)
        if day.weekday() in days:
            opens = _local(day_dt, begin, zone, closing=False)
            closes = _local(day_dt, end, zone, closing=True)
            if moment < closes and opens < closes:
                moment = max(moment, opens)
                if moment + left <= closes:
                    return moment + left
                left -= closes - moment
        nxt = day_dt + timedelta(days=1)
        moment = _local(nxt, (0, 0), zone, closing=False)
    raise ValueError(f"business time of {duration} does not fit in ten years of these hours")


def in_window(moment: datetime, window: SendWindow, zone_name: str) -> bool:
    """Whether a moment lies inside the send window in the zone."""
    local = moment.astimezone(ZoneInfo(zone_name))
    return WEEKDAYS[local.weekday()] in window.days and window.start <= local.time().replace(tzinfo=None) < window.end


class DemoClock:
    """Cadence time that runs `scale` times faster than real time from `origin`.

    At scale 1 cadence time is real time; at 86400 a cadence day lasts a real second, and the
    send window still applies to cadence time, so a demo shows the same schedule, faster.
    """

    def __init__(self, origin: datetime, scale: float) -> None:
        self.origin = origin
        self.scale = scale

    def cadence_time(self, real: datetime) -> datetime:
        return self.origin + (real - self.origin) * self.scale

    def real_delay(self, real_now: datetime, cadence_target: datetime) -> timedelta:
        return max(cadence_target - self.cadence_time(real_now), timedelta(0)) / self.scale


def describe_local(moment: datetime, zone_name: str) -> str:
    """'Tue 09:00 Europe/Athens' for summaries and status lines."""
    return f"{moment.astimezone(ZoneInfo(zone_name)):%a %d %b %H:%M} {zone_name}"


def local_date(moment: datetime, zone_name: str) -> date:
    """The day `moment` falls on in the zone."""
    return moment.astimezone(ZoneInfo(zone_name)).date()


def local_morning(day: date, zone_name: str, hour: int = 9) -> datetime:
    """`hour` o'clock on `day` in the zone (a keep-in-touch date's moment)."""
    return datetime.combine(day, time(hour), tzinfo=ZoneInfo(zone_name))
