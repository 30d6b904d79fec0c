"""Operator scripts run as files (`python scripts/…`); a package so one can use another's helpers."""
