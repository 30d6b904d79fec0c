"""Deterministic workflow code: one workflow class per module."""
