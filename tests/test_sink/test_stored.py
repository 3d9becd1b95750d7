from sink.stored import StoredOffsets

HOUR = "events/dt=2026-11-27/hour=09"


def test_offsets_inside_existing_objects_are_known():
    keys = {
        HOUR + "/": [
            HOUR + "/events-p0-0-9.parquet",
            HOUR + "/events-p0-20-29.parquet",
            HOUR + "/events-p1-0-50.parquet",
            HOUR + "/README.txt",
        ]
    }
    listed = []

    def list_keys(prefix):
        listed.append(prefix)
        return keys.get(prefix, [])

    stored = StoredOffsets("events", list_keys)
    assert [o for o in range(35) if stored.contains(HOUR, 0, o)] == list(range(10)) + list(range(20, 30))
    assert stored.contains(HOUR, 1, 50) and not stored.contains(HOUR, 1, 51)
    assert not stored.contains(HOUR, 2, 0)
    assert listed == [HOUR + "/"]  # listed once, then cached

    stored.add(HOUR, 0, 30, 40)
    assert stored.contains(HOUR, 0, 35)
    assert not stored.contains("events/dt=2026-11-27/hour=10", 0, 35)


def test_cache_is_bounded():
    stored = StoredOffsets("events", lambda prefix: [], max_hours=2)
    for h in range(5):
        stored.load(f"events/dt=2026-11-27/hour={h:02d}")
    assert not stored.is_loaded("events/dt=2026-11-27/hour=00")
    assert stored.is_loaded("events/dt=2026-11-27/hour=04")


def test_the_last_stored_offset_of_a_partition_in_an_hour():
    stored = StoredOffsets("events", lambda prefix: [
        "events/dt=2026-11-27/hour=10/events-p0-0-9.parquet",
        "events/dt=2026-11-27/hour=10/events-p0-20-25.parquet",
        "events/dt=2026-11-27/hour=10/events-p1-3-4.parquet",
    ])
    hour = "events/dt=2026-11-27/hour=10"
    assert [stored.last_offset(hour, p) for p in (0, 1, 2)] == [25, 4, -1]
    stored.add(hour, 2, 30, 31)
    assert stored.last_offset(hour, 2) == 31


def test_forgotten_hours_are_listed_again():
    keys = {HOUR + "/": [HOUR + "/events-p0-0-9.parquet"]}
    stored = StoredOffsets("events", lambda prefix: list(keys.get(prefix, [])))
    assert not stored.contains(HOUR, 1, 5)
    keys[HOUR + "/"].append(HOUR + "/events-p1-0-9.parquet")  # written by another sink meanwhile
    assert not stored.contains(HOUR, 1, 5)  # the listing is cached
    stored.forget()
    assert stored.contains(HOUR, 1, 5) and stored.contains(HOUR, 0, 9)
