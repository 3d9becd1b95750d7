"""Reaction layer (the Lambda role): consumers of ``clickstream.reactions`` that act on fired rules."""
