"""Shared contracts of the clickstream stack: settings, topics, event models, lake layout, CLI."""

__version__ = "0.1.0"
