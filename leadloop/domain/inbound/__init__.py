"""Inbound mail read without side effects: replies, auto-replies, bounces and complaints classified (pure)."""

from leadloop.domain.inbound.classify import classify
from leadloop.domain.inbound.verdict import INBOUND_KINDS, InboundKind, InboundVerdict

__all__ = ["INBOUND_KINDS", "InboundKind", "InboundVerdict", "classify"]
