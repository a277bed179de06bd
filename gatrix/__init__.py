"""Gatrix Analytics: self-hosted product and web analytics."""

__version__ = "0.1.0"
