"""Passerelle: a consent-aware bank-to-chat event pipeline."""

__version__ = "0.1.0"
