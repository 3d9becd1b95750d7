"""Processing layer (the Kinesis Data Analytics role): Faust agents over the event streams.

The logic (sessions, windows, rules) lives in plain modules with no Kafka import;
``app.py`` only wires it to topics and tables.
"""
