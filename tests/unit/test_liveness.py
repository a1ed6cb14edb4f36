from ragserve.store.liveness import LiveMemo


def test_remembers_only_for_the_change_it_was_read_at() -> None:
    memo = LiveMemo()
    memo.put(5, "k", frozenset({1, 2}))
    assert memo.get(5, "k") == frozenset({1, 2})
    assert memo.get(6, "k") is None  # a change since: ask the store again
    memo.put(6, "j", frozenset({3}))
    assert memo.get(6, "k") is None and len(memo) == 1  # moving on forgets the older state


def test_an_older_read_never_replaces_a_newer_state() -> None:
    memo = LiveMemo()
    memo.put(7, "k", frozenset({1}))
    memo.put(6, "k", frozenset({1, 2}))  # a slow read that started before the newest change
    assert memo.get(7, "k") == frozenset({1})
    assert memo.get(6, "k") is None


def test_bounded_in_entries() -> None:
    memo = LiveMemo(max_entries=3)
    for i in range(10):
        memo.put(1, i, frozenset({i}))
        assert len(memo) <= 3
    assert memo.get(1, 9) == frozenset({9})
