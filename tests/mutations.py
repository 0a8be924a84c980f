"""Shared hypothesis strategies for parser fuzzing: frame mutations (bit flips, cuts, drops)."""

from __future__ import annotations

from hypothesis import strategies as st

#: (kind, position, xor mask): flip bits of one byte, cut the frame short, or drop one byte.
MUTATION = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 1000), st.integers(1, 255)),
    st.tuples(st.just("cut"), st.integers(0, 1000), st.just(0)),
    st.tuples(st.just("drop"), st.integers(0, 1000), st.just(0)),
)


def mutate(frame: bytes, mutation) -> bytes:
    kind, at, x = mutation
    i = at % len(frame)
    if kind == "flip":
        return frame[:i] + bytes([frame[i] ^ x]) + frame[i + 1:]
    if kind == "cut":
        return frame[:i]
    return frame[:i] + frame[i + 1:]
