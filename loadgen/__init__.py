"""Synthetic traffic for clickstream: seeded visitors (``visitors``), how their calls reach the API
(``deliveries``), what the pipeline should then hold (``expected``), and the HTTP sender (``sender``).

Everything but ``sender`` is pure: the seed and the clock are passed in, so the same seed gives
the same events, message ids included.
"""
