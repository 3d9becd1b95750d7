"""The API places each record where Kafka's default partitioner would: same key, same partition."""

import uuid

from aiokafka.partitioner import DefaultPartitioner
from hypothesis import given
from hypothesis import strategies as st

from ingest_api.producer import key_hash


@given(st.binary(max_size=80), st.integers(min_value=1, max_value=64))
def test_key_hash_places_keys_as_the_default_partitioner_does(key, count):
    partitions = list(range(count))
    assert partitions[key_hash(key) % count] == DefaultPartitioner()(key, partitions, partitions)


def test_repeated_keys_are_hashed_once_and_answer_the_same():
    key = str(uuid.uuid4()).encode()
    first = key_hash(key)
    hits = key_hash.cache_info().hits
    assert key_hash(key) == first and key_hash.cache_info().hits == hits + 1
