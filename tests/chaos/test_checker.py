"""Tests of the linearizability checker on hand-made and generated histories."""

from __future__ import annotations

import itertools
import random
import threading
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.chaos.checker import Result, check
from tests.chaos.history import INITIAL, History, Kind, Op, Status, step


def op(kind: Kind, invoke: float, complete: float | None, status: Status = "ok",
       value: str | None = None, rev: int | None = None, expect: int | None = None,
       key: str = "k", process: int = 0) -> Op:
    """Shorthand for a hand-made op."""
    return Op(process, key, kind, invoke, complete, status, value, expect, rev)


def linearizable(ops: list[Op]) -> Result:
    """Check `ops`, print the verdict, insist it is linearizable."""
    result = check(ops)
    print(result)
    assert result.ok is True, str(result)
    return result


def violation(ops: list[Op], key: str = "k") -> Result:
    """Check `ops`, print the verdict and its explanation, insist on a violation on `key`."""
    result = check(ops)
    print(result)
    assert result.ok is False, str(result)
    assert result.key == key
    assert result.explanation
    return result


# --- linearizable ---------------------------------------------------------------------------

def test_sequential() -> None:
    linearizable([
        op("read", 0, 1, value=None), op("create", 2, 3, value="a", rev=5),
        op("read", 4, 5, value="a", rev=5), op("update", 6, 7, value="b", rev=9, expect=5),
        op("read", 8, 9, value="b", rev=9), op("delete", 10, 11, rev=12, expect=9),
        op("read", 12, 13, value=None), op("create", 14, 15, value="c", rev=20),
        op("read", 16, 17, value="c", rev=20)])


@pytest.mark.parametrize("winner", ["x", "y"])
def test_concurrent_writes_in_either_order(winner: str) -> None:
    revs = {"x": 3, "y": 4} if winner == "y" else {"x": 4, "y": 3}
    linearizable([
        op("create", 0, 1, value="a", rev=1),
        op("update", 2, 6, value="x", rev=revs["x"], process=1),
        op("update", 3, 5, value="y", rev=revs["y"], process=2),
        op("read", 4, 4.5, value="a", rev=1, process=3),  # before both took effect
        op("read", 7, 8, value=winner, rev=revs[winner], process=3)])


def test_writes_batched_in_one_entry_share_a_revision() -> None:
    linearizable([
        op("update", 0, 2, value="x", rev=7, process=1), op("create", 0, 2, value="w", rev=7),
        op("update", 1, 2, value="y", rev=7, expect=7, process=2),
        op("read", 3, 4, value="y", rev=7)])


def test_unknown_write_that_took_effect_later() -> None:
    linearizable([
        op("create", 0, 1, value="a", rev=1),
        op("update", 2, None, status="unknown", value="x", process=1),
        op("read", 3, 4, value="a", rev=1), op("read", 50, 51, value="a", rev=1),
        op("read", 60, 61, value="x", rev=40),  # took effect long after its timeout
        op("update", 62, 63, value="z", rev=41, expect=40)])


def test_unknown_write_that_never_took_effect() -> None:
    linearizable([
        op("create", 0, 1, value="a", rev=1),
        op("update", 2, None, status="unknown", value="x", process=1),
        op("delete", 3, None, status="unknown", process=2),
        op("read", 5, 6, value="a", rev=1), op("update", 7, 8, value="b", rev=4, expect=1),
        op("read", 9, 10, value="b", rev=4)])


def test_cas_chain_with_refusals() -> None:
    linearizable([
        op("create", 0, 1, value="v0", rev=1),
        op("update", 2, 4, value="v1", rev=2, expect=1, process=1),
        op("update", 2, 4, status="fail", value="v1'", expect=1, process=2),  # 412
        op("update", 5, 7, value="v2", rev=3, expect=2, process=2),
        op("create", 5, 6, status="fail", value="dup", process=3),  # 409
        op("delete", 8, 9, rev=5, expect=3, process=1),
        op("update", 10, 11, status="fail", value="gone", expect=3),  # 404
        op("read", 12, 13, value=None, process=3)])


# --- violations -----------------------------------------------------------------------------

def test_stale_read_after_completed_write() -> None:
    result = violation([
        op("create", 0, 1, value="a", rev=1), op("update", 2, 3, value="b", rev=2, process=1),
        op("read", 4, 5, value="a", rev=1, process=2)])
    assert "'b'@2" in result.explanation and "read saw 'a'" in result.explanation


def test_lost_acknowledged_write() -> None:
    violation([op("create", 0, 1, value="a", rev=3), op("read", 2, 3, value=None, process=1)])
    violation([op("create", 0, 1, value="a", rev=3), op("update", 1, 2, value="b", rev=4),
               op("read", 3, 4, value="a", process=1)])


def test_two_creates_both_ok() -> None:
    violation([op("create", 0, 2, value="a", rev=1),
               op("create", 1, 3, value="b", rev=2, process=1)])


def test_update_with_stale_expected_revision_ok() -> None:
    result = violation([
        op("create", 0, 1, value="a", rev=1), op("update", 2, 3, value="b", rev=2, expect=1),
        op("update", 4, 5, value="c", rev=3, expect=1, process=1)])
    assert "If-Match 1" in result.explanation


def test_revision_going_backwards() -> None:
    violation([op("create", 0, 1, value="a", rev=5), op("update", 2, 3, value="b", rev=4)])
    violation([op("create", 0, 1, value="a", rev=5, key="k1"),  # across keys, in real time
               op("create", 2, 3, value="b", rev=5, key="k2")], key="k2")
    violation([op("create", 0, 3, value="a", rev=5), op("update", 1, 4, value="b", rev=4),
               op("read", 5, 6, value="b", rev=4)])  # concurrent, but b must come after a


def test_read_of_a_value_never_written() -> None:
    violation([op("create", 0, 1, value="a", rev=1), op("read", 0, 2, value="zz", process=1)])


def test_gives_up_without_a_verdict_when_the_cap_is_hit() -> None:
    ops = [op("create", 0, 1, value="a", rev=1), op("read", 30, 31, value="zz")]
    for i in range(12):  # writes of unknown outcome, each seen by a concurrent read
        ops.append(op("update", 1, None, status="unknown", value=f"u{i}", process=i + 1))
        ops.append(op("read", 2, 10 + i, value=f"u{i}", process=i + 20))
    result = check(ops, max_states=50)
    print(result)
    assert result.ok is None and result.key == "k" and "gave up" in result.explanation


# --- history --------------------------------------------------------------------------------

def test_history_threads_json_and_by_key(tmp_path: Path) -> None:
    history = History()

    def client(process: int) -> None:
        for n in range(50):
            key = f"k{process % 2}"
            handle = history.invoke(process, key, "update", value=f"{process}-{n}")
            if n % 3:
                handle.ok(revision=n)
            else:
                handle.unknown()
        history.invoke(process, "k0", "read").ok("x", 3)

    threads = [threading.Thread(target=client, args=(p,)) for p in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(history) == 204 and set(history.by_key()) == {"k0", "k1"}
    handle = history.invoke(9, "k0", "create", value="c")
    handle.fail()
    with pytest.raises(RuntimeError):
        handle.ok()
    loaded = History.load(history.save(tmp_path / "history.json"))
    assert loaded.ops == history.ops
    assert [o.status for o in history.ops].count("unknown") == 4 * 17


# --- generated histories --------------------------------------------------------------------

def generate(rng: random.Random, n_ops: int, keys: int, width: float,
             unknown_rate: float) -> list[Op]:
    """A sequential run of the model (op k takes effect at time k), with widened intervals
    (each still containing its op's point) and some outcomes lost: linearizable by design."""
    state: dict[str, tuple[str, int] | None] = {f"k{i}": None for i in range(keys)}
    revision, timed = 0, []
    for k in range(n_ops):
        key, kind = rng.choice(sorted(state)), rng.choice(["create", "update", "delete", "read"])
        current, value = state[key], f"v{k}"
        invoke, complete = k - rng.uniform(0, width), k + rng.uniform(0, width)
        if kind == "read":
            o = Op(0, key, "read", invoke, complete, "ok", current and current[0],
                   revision=current and current[1])
        else:
            expect = current[1] if current and kind != "create" and rng.random() < 0.6 else None
            if expect is not None and rng.random() < 0.2:
                expect -= 1  # stale If-Match: refused
            applies = (current is None) == (kind == "create") and (
                expect is None or (current is not None and expect == current[1]))
            o = Op(0, key, kind, invoke, complete, "fail", value if kind != "delete" else None,
                   expect)
            if applies:
                revision += rng.randint(1, 3)
                state[key] = None if kind == "delete" else (value, revision)
                o.status, o.revision = "ok", revision
        if o.kind != "read" and rng.random() < unknown_rate:  # applied or not: either way
            o.status, o.complete, o.revision = "unknown", None, None
        timed.append(o)
    free: list[float] = []  # when each process is free again: a process runs one op at a time
    for o in sorted(timed, key=lambda o: o.invoke):
        o.process = next((p for p, t in enumerate(free) if t < o.invoke), len(free))
        free[o.process:o.process + 1] = [o.complete if o.complete is not None else 1e18]
    return timed


Params = tuple[int, int, int, float, float]
history_params = st.tuples(st.integers(0, 2**32), st.integers(1, 300), st.integers(1, 3),
                           st.floats(0, 4), st.sampled_from([0.0, 0.1, 0.3]))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history_params)
def test_generated_histories_are_linearizable(params: Params) -> None:
    seed, n_ops, keys, width, unknown_rate = params
    ops = generate(random.Random(seed), n_ops, keys, width, unknown_rate)
    assert check(ops).ok is True, f"{check(ops)}\n{History(ops).to_json()}"


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history_params, st.integers(0, 10**6))
def test_corrupted_read_is_caught(params: Params, pick: int) -> None:
    seed, n_ops, keys, width, unknown_rate = params
    ops = generate(random.Random(seed), n_ops, keys, width, unknown_rate)
    reads = [o for o in ops if o.kind == "read"]
    if not reads:
        return
    victim = reads[pick % len(reads)]
    victim.value, victim.revision = "never-written", None
    result = check(ops)
    print(result)
    assert result.ok is False and result.key == victim.key, str(result)
    assert "never-written" in result.explanation and "no order explains" in result.explanation


def test_two_thousand_ops_per_key_is_fast() -> None:
    for unknown_rate in (0.0, 0.05):
        ops = generate(random.Random(7), 7000, 2, 2.0, unknown_rate)
        started = time.perf_counter()
        result = check(ops)
        elapsed = time.perf_counter() - started
        print(result, f"in {elapsed:.3f}s")
        assert result.ok is True and result.ops_checked > 4000
        assert elapsed < 2.0


# --- tiny random histories against brute force ----------------------------------------------

def brute_force(ops: list[Op]) -> bool:
    """The spec, literally: revisions respect real time, and some subset of the unknown ops
    and order of all the chosen ops respects real time and the model."""
    writes = [o for o in ops if o.status == "ok" and o.kind != "read" and o.revision]
    if any(a.complete < b.invoke and a.revision >= b.revision  # type: ignore[operator]
           for a in writes for b in writes):
        return False
    known = [o for o in ops if o.status == "ok"]
    maybe = [o for o in ops if o.status == "unknown" and o.kind != "read"]
    for r in range(len(maybe) + 1):
        for chosen in itertools.combinations(maybe, r):
            for order in itertools.permutations(known + list(chosen)):
                if any(b.complete is not None and b.complete < a.invoke
                       for i, a in enumerate(order) for b in order[i + 1:]):
                    continue
                state = INITIAL
                for o in order:
                    state = step(o, state)  # type: ignore[assignment]
                    if isinstance(state, str):
                        break
                else:
                    return True
    return False


def tiny_op(kind: Kind, start: int, length: int, status: Status, value: str | None,
            rev: int | None, expect: int | None) -> Op:
    """A small op on key "k" from drawn parts (fields that do not apply are dropped)."""
    return Op(start % 3, "k", kind, start, None if status == "unknown" else start + length,
              status, None if kind == "delete" else value,
              expect if kind in ("update", "delete") else None, rev if status == "ok" else None)


tiny_ops = st.lists(st.builds(
    tiny_op, st.sampled_from(["create", "update", "delete", "read"]), st.integers(0, 8),
    st.integers(0, 4), st.sampled_from(["ok", "ok", "unknown", "fail"]),
    st.sampled_from([None, "a", "b"]), st.none() | st.integers(1, 4),
    st.none() | st.integers(1, 4)), max_size=6)


@settings(max_examples=300, deadline=None)
@given(tiny_ops)
def test_agrees_with_brute_force(ops: list[Op]) -> None:
    result = check(ops)
    assert result.ok is brute_force(ops), f"{result}\n{History(ops).to_json()}"
