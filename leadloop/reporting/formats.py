"""How the report writes its numbers, on the page and on the charts: percentages and hours."""


def pct(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value * 100:.{digits}f}%"


def num(value: float | None, unit: str = "") -> str:
    return "–" if value is None else f"{value:.1f}{unit}"
