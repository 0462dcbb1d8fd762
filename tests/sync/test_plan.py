"""Pure plan logic: the safety guard and batching."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sync.plan import guard_reason, make_batches


@pytest.mark.parametrize(
    ("before", "removes", "blocked"),
    [
        (100, 25, False),   # exactly the limit is allowed
        (100, 26, True),
        (0, 0, False),      # new segment
        (8, 8, False),      # below min_removals: small segments may churn
        (40, 10, False),
        (30, 10, True),
    ],
)
def test_guard_blocks_only_above_the_fraction(before: int, removes: int, blocked: bool) -> None:
    reason = guard_reason(before, removes, max_fraction=0.25, min_removals=10, force=False)
    assert (reason is not None) is blocked
    if reason:
        assert f"would remove {removes} of {before}" in reason
        assert "--force" in reason


def test_force_overrides_the_guard() -> None:
    assert guard_reason(100, 100, 0.25, 10, force=True) is None


def test_batches_respect_the_size_and_put_removes_first() -> None:
    batches = list(make_batches(["r1", "r2"], ["a1", "a2", "a3"], size=2))
    assert [(b.removes, b.adds) for b in batches] == [
        (("r1", "r2"), ()), ((), ("a1", "a2")), ((), ("a3",))
    ]
    mixed = list(make_batches(["r1"], ["a1"], size=5))
    assert [(b.removes, b.adds) for b in mixed] == [(("r1",), ("a1",))]


def test_batch_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        list(make_batches([], ["a"], size=0))


ids = st.sets(st.text("abcdef", min_size=1, max_size=3), max_size=40)


@given(current=ids, desired=ids, size=st.integers(1, 7))
def test_applying_every_batch_turns_current_into_desired(
    current: set[str], desired: set[str], size: int
) -> None:
    adds = sorted(desired - current)
    removes = sorted(current - desired)
    state = set(current)
    for batch in make_batches(removes, adds, size):
        assert 0 < len(batch.adds) + len(batch.removes) <= size
        state |= set(batch.adds)
        state -= set(batch.removes)
    assert state == desired
