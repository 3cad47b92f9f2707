"""Arachne: proactive detection of known abuse imagery for child-protection hotlines."""

__version__ = "0.1.0"
