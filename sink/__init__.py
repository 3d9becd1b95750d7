"""Persistence layer (the Firehose role): Kafka topics to Parquet objects in the lake.

Three layers: buffering policy (``buffer.py``), format (``parquet.py``: rows -> bytes)
and destination (``destination.py``: put(key, bytes) on S3 or a local directory).
"""
