import pytest

from cbi_pipeline.core.memo import Kept


def test_kept_computes_each_key_once_and_drops_the_least_recently_used():
    calls: list[str] = []

    def make(key: str):
        return lambda: calls.append(key) or key.upper()

    kept: Kept[str] = Kept(2)
    assert kept.get("a", make("a")) == "A"
    assert kept.get("b", make("b")) == "B"
    assert kept.get("a", make("a")) == "A"  # kept: not computed again, and now the newest
    assert kept.get("c", make("c")) == "C"  # drops b, the least recently used
    assert kept.values() == ["A", "C"]
    assert kept.get("b", make("b")) == "B"  # computed again
    assert calls == ["a", "b", "c", "b"]
    kept.clear()
    assert kept.values() == []
    with pytest.raises(ValueError, match="size must be >= 1"):
        Kept(0)


def test_a_failing_computation_keeps_nothing():
    kept: Kept[int] = Kept(2)

    def fail() -> int:
        raise RuntimeError("bad input")

    with pytest.raises(RuntimeError):
        kept.get("x", fail)
    assert kept.values() == [] and kept.get("x", lambda: 3) == 3
