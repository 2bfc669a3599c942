"""The pooled actor runtime on its own: many actors on a few threads, each with its own
inbox, handling its messages one at a time and in order; ask, tell, stop and failures as
pykka's ThreadingActor has them; waits as messages (Await), with the messages that arrive
meanwhile held in order; and no thread left behind."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import pykka
import pytest

from actors.runtime import ActorPool, Await, PooledActor, default_pool, live_actors
from tests.actor_probes import WAIT, is_done, outcome

# --------------------------------------------------------------------------- actors


class Recorder(PooledActor):
    """Records every message it handles, with the thread it ran on, and how many
    threads were inside it at once."""

    def __init__(self, log: list, pool: ActorPool | None = None, pause: float = 0.0) -> None:
        super().__init__(pool=pool)
        self.log = log
        self.pause = pause
        self.inside = 0
        self.most_inside = 0

    def on_receive(self, message: Any) -> Any:
        self.inside += 1
        self.most_inside = max(self.most_inside, self.inside)
        if self.pause:
            time.sleep(self.pause)  # lets another thread try to get in, if it could
        self.log.append((message, threading.current_thread().name))
        self.inside -= 1
        if message == "most inside":
            return self.most_inside
        if message == "boom":
            raise ValueError("boom")
        return message


class Relay(PooledActor):
    """Passes a count down a chain of relays; the last one completes the future."""

    def __init__(self, pool: ActorPool, done: pykka.ThreadingFuture, nxt: pykka.ActorRef | None = None) -> None:
        super().__init__(pool=pool)
        self.next = nxt
        self.done = done

    def on_receive(self, message: int) -> None:
        if self.next is None:
            self.done.set(message)
        else:
            self.next.tell(message + 1)


@dataclass(frozen=True)
class Store:
    """A write whose answer comes back through its ``reply`` (a future, or a reply message)."""

    value: Any
    reply: Any = field(default=None, compare=False)


class Keeper(pykka.ThreadingActor):
    """The far side of a wait: answers Store by its reply, and asks by return value.
    Held writes are answered only when told "release"."""

    def __init__(self, hold: bool = False) -> None:
        super().__init__()
        self.hold = hold
        self.held: list[Store] = []
        self.values: list[Any] = []

    def on_receive(self, message: Any) -> Any:
        if message == "release":
            for held in self.held:
                self._answer(held)
            self.held = []
            return None
        if isinstance(message, Store):
            if self.hold:
                self.held.append(message)
            else:
                self._answer(message)
            return None
        return ("asked", message)

    def _answer(self, message: Store) -> None:
        if message.value == "refuse":
            message.reply.set_exception((ValueError, ValueError("refused"), None))
        else:
            self.values.append(message.value)
            message.reply.set(f"stored {message.value}")


class Waiter(PooledActor):
    """Writes through a Keeper and waits for it, as an order tracker waits for its commit."""

    def __init__(self, keeper: pykka.ActorRef, log: list, pool: ActorPool | None = None) -> None:
        super().__init__(pool=pool)
        self.keeper = keeper
        self.log = log
        self.failures: list[BaseException] = []
        self.undelivered_messages: list[Any] = []

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, tuple) and message[0] == "write":
            return self._write(message[1])
        if isinstance(message, tuple) and message[0] == "ask":
            return self._ask(message[1])
        if isinstance(message, tuple) and message[0] == "write, catching":
            return self._write_catching(message[1])
        self.log.append(message)
        return message

    def _write(self, value: Any):
        self.log.append(("writing", value))
        answer = yield Await(self.keeper, Store(value))
        self.log.append(("written", answer))
        return answer

    def _write_catching(self, value: Any):
        try:
            yield Await(self.keeper, Store(value))
        except ValueError as error:
            self.log.append(("refused", str(error)))
            return "handled"
        return "stored"

    def _ask(self, value: Any):
        answer = yield Await(self.keeper, value, reply_field=None)
        self.log.append(("answered", answer))
        return answer

    def on_failure(self, exception_type, exception_value, traceback) -> None:
        self.failures.append(exception_value)

    def undelivered(self, message: Any) -> None:
        self.undelivered_messages.append(message)


@pytest.fixture
def pool():
    pool = ActorPool(2, name="test-pool")
    yield pool
    pool.shutdown(timeout=WAIT)


def wait_until(predicate, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.001)


def pool_threads(pool: ActorPool) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(f"{pool.name}-")]


# --------------------------------------------------------------------------- one actor


def test_an_actor_handles_its_messages_in_the_order_told(pool):
    log: list = []
    ref = Recorder.start(log, pool=pool)

    for i in range(1000):
        ref.tell(i)

    assert ref.ask("last", timeout=WAIT) == "last"
    assert [m for m, _ in log] == [*range(1000), "last"]


def test_no_two_threads_are_ever_inside_one_actor(pool):
    log: list = []
    ref = Recorder.start(log, pool=pool, pause=0.0005)

    def tell_many(k: int) -> None:
        for i in range(50):
            ref.tell((k, i))

    senders = [threading.Thread(target=tell_many, args=(k,)) for k in range(4)]
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join()

    assert ref.ask("most inside", timeout=WAIT) == 1
    assert len(log) == 201
    for k in range(4):  # each sender's messages in the order it sent them
        assert [m[1] for m, _ in log if isinstance(m, tuple) and m[0] == k] == list(range(50))


def test_ask_answers_the_return_value_and_an_error_goes_back_to_the_asker_only(pool):
    log: list = []
    ref = Recorder.start(log, pool=pool)

    assert ref.ask("hello", timeout=WAIT) == "hello"
    with pytest.raises(ValueError, match="boom"):
        ref.ask("boom", timeout=WAIT)
    assert ref.is_alive()
    assert ref.ask("still here", timeout=WAIT) == "still here"


def test_proxies_work_on_a_pooled_actor(pool):
    ref = Recorder.start([], pool=pool)

    assert ref.proxy().on_receive("via proxy").get(timeout=WAIT) == "via proxy"


def test_stop_handles_what_was_told_before_then_refuses_more(pool):
    log: list = []
    ref = Recorder.start(log, pool=pool)
    for i in range(100):
        ref.tell(i)

    assert ref.stop(block=True, timeout=WAIT) is True

    assert [m for m, _ in log] == list(range(100))
    assert not ref.is_alive()
    assert ref.actor_stopped.wait(0)
    with pytest.raises(pykka.ActorDeadError):
        ref.tell("late")
    with pytest.raises(pykka.ActorDeadError):
        ref.ask("late", timeout=WAIT)
    assert ref.stop(block=True, timeout=WAIT) is False
    assert ref not in pool.live()


def test_an_ask_queued_behind_a_stop_is_answered_actor_dead(pool):
    ref = Recorder.start([], pool=pool, pause=0.01)
    ref.tell("slow")
    stopping = ref.stop(block=False)
    future = ref.ask("behind the stop", block=False)

    stopping.get(timeout=WAIT)
    assert isinstance(outcome(future), pykka.ActorDeadError)


def test_a_told_message_that_fails_calls_on_failure_and_stops_only_that_actor(pool):
    failures: list = []

    class Failing(Recorder):
        def on_failure(self, exception_type, exception_value, traceback) -> None:
            failures.append(exception_value)

    failing = Failing.start([], pool=pool)
    other = Recorder.start([], pool=pool)

    failing.tell("boom")

    assert failing.actor_stopped.wait(WAIT)
    assert [str(f) for f in failures] == ["boom"]
    assert other.ask("alive", timeout=WAIT) == "alive"
    assert failing not in pool.live()


def test_on_start_and_on_stop_run_on_the_pool():
    ran: list = []

    class Hooked(PooledActor):
        def on_start(self) -> None:
            ran.append(("start", threading.current_thread().name))

        def on_stop(self) -> None:
            ran.append(("stop", threading.current_thread().name))

    pool = ActorPool(1, name="hooks")
    try:
        ref = Hooked.start(pool=pool)
        ref.stop(block=True, timeout=WAIT)
    finally:
        pool.shutdown(timeout=WAIT)
    assert ran == [("start", "hooks-1"), ("stop", "hooks-1")]


# --------------------------------------------------------------------------- many actors


def test_many_actors_run_on_few_threads_and_threads_do_not_grow_with_actors(pool):
    before = threading.active_count()
    chains, length = 20, 100
    futures = []
    heads = []
    for _ in range(chains):
        done = pykka.ThreadingFuture()
        nxt = None
        for _ in range(length):
            nxt = Relay.start(pool, done, nxt)
        heads.append(nxt)
        futures.append(done)

    assert len(pool) == chains * length
    for head in heads:
        head.tell(1)
    assert [f.get(timeout=WAIT) for f in futures] == [length] * chains
    assert threading.active_count() - before <= pool.size
    assert len(pool_threads(pool)) <= 2

    assert pool.stop_all(timeout=WAIT) == chains * length
    assert len(pool) == 0


def test_pooled_actors_are_not_in_pykkas_registry_and_are_listed_by_the_runtime(pool):
    ref = Recorder.start([], pool=pool)

    assert ref not in pykka.ActorRegistry.get_all()
    assert ref in live_actors()
    ref.stop(block=True, timeout=WAIT)
    assert ref not in live_actors()


# --------------------------------------------------------------------------- waits as messages


def test_a_handler_waits_for_its_answer_as_a_message_and_later_messages_wait_their_turn(pool):
    keeper = Keeper.start(hold=True)
    try:
        log: list = []
        waiter = Waiter.start(keeper, log, pool=pool)
        waiter.tell(("write", "A"))
        waiter.tell("after A")
        asked = waiter.ask("asked after A", block=False)
        waiter.tell(("write", "B"))
        waiter.tell("after B")
        wait_until(lambda: log == [("writing", "A")])

        time.sleep(0.02)  # nothing else is handled while A waits for its answer
        assert log == [("writing", "A")]
        assert not is_done(asked)
        keeper.tell("release")  # A's answer; B waits in turn
        assert asked.get(timeout=WAIT) == "asked after A"
        wait_until(lambda: ("writing", "B") in log)
        keeper.tell("release")
        wait_until(lambda: "after B" in log)

        assert log == [
            ("writing", "A"), ("written", "stored A"), "after A", "asked after A",
            ("writing", "B"), ("written", "stored B"), "after B",
        ]
    finally:
        keeper.stop()


def test_an_ask_of_a_waiting_handler_is_answered_with_what_it_returns_in_the_end(pool):
    keeper = Keeper.start()
    try:
        waiter = Waiter.start(keeper, [], pool=pool)

        assert waiter.ask(("write", "X"), timeout=WAIT) == "stored X"
        assert waiter.ask(("ask", "Q"), timeout=WAIT) == ("asked", "Q")
    finally:
        keeper.stop()


def test_an_error_answer_is_raised_in_the_handler_which_may_catch_it(pool):
    keeper = Keeper.start()
    try:
        log: list = []
        waiter = Waiter.start(keeper, log, pool=pool)

        assert waiter.ask(("write, catching", "refuse"), timeout=WAIT) == "handled"
        assert log == [("refused", "refused")]
        with pytest.raises(ValueError, match="refused"):
            waiter.ask(("write", "refuse"), timeout=WAIT)
        assert waiter.is_alive()  # asked: the asker hears it, the actor carries on
    finally:
        keeper.stop()


def test_an_uncaught_error_answer_to_a_told_message_calls_on_failure_and_stops_the_actor(pool):
    keeper = Keeper.start()
    try:
        waiter_actor: list[Waiter] = []

        class Watched(Waiter):
            def on_start(self) -> None:
                waiter_actor.append(self)

        waiter = Watched.start(keeper, [], pool=pool)
        waiter.tell(("write", "refuse"))

        assert waiter.actor_stopped.wait(WAIT)
        assert [str(e) for e in waiter_actor[0].failures] == ["refused"]
    finally:
        keeper.stop()


def test_awaiting_an_actor_that_is_not_running_raises_actor_dead_in_the_handler(pool):
    keeper = Keeper.start()
    keeper.stop()
    waiter = Waiter.start(keeper, [], pool=pool)

    with pytest.raises(pykka.ActorDeadError):
        waiter.ask(("write", "A"), timeout=WAIT)


def test_a_stop_is_not_held_behind_a_waiting_handler(pool):
    keeper = Keeper.start(hold=True)
    try:
        actors: list[Waiter] = []

        class Watched(Waiter):
            def on_start(self) -> None:
                actors.append(self)

        log: list = []
        waiter = Watched.start(keeper, log, pool=pool)
        waiter.tell(("write", "A"))
        waiter.tell("held")
        wait_until(lambda: log == [("writing", "A")])

        assert waiter.stop(block=True, timeout=WAIT) is True

        # The step was given up and the held message never handled: both are reported.
        assert actors[0].undelivered_messages == [("write", "A"), "held"]
        keeper.tell("release")  # the answer arrives for nobody: no harm
        assert keeper.ask("ping", timeout=WAIT) == ("asked", "ping")
    finally:
        keeper.stop()


def test_a_single_thread_pool_never_deadlocks_however_many_actors_wait():
    """Every actor on one thread waits on an answer from another actor on that same
    thread: a blocking wait would hang at the first; waits as messages never do."""
    pool = ActorPool(1, name="one-thread")
    try:
        keeper = PooledKeeper.start(pool=pool)
        waiters = [Waiter.start(keeper, [], pool=pool) for _ in range(200)]
        futures = [w.ask(("write", i), block=False) for i, w in enumerate(waiters)]
        assert [f.get(timeout=WAIT) for f in futures] == [f"stored {i}" for i in range(200)]
    finally:
        pool.shutdown(timeout=WAIT)
    assert pool_threads(pool) == []


class PooledKeeper(PooledActor):
    def on_receive(self, message: Any) -> Any:
        message.reply.set(f"stored {message.value}")


# --------------------------------------------------------------------------- threads


def test_the_default_pool_threads_end_when_its_last_actor_stops():
    pool = default_pool()
    refs = [Recorder.start([]) for _ in range(10)]
    for ref in refs:
        ref.tell("x")
    assert all(ref.ask("y", timeout=WAIT) == "y" for ref in refs)
    assert 1 <= len(pool_threads(pool)) <= pool.size

    for ref in refs:
        ref.stop(block=True, timeout=WAIT)

    wait_until(lambda: not pool_threads(pool))
    # ... and come back when work does.
    again = Recorder.start([])
    assert again.ask("z", timeout=WAIT) == "z"
    again.stop(block=True, timeout=WAIT)
    wait_until(lambda: not pool_threads(pool))


def test_shutdown_stops_the_pools_actors_and_joins_its_threads():
    pool = ActorPool(3, name="owned")
    refs = [Recorder.start([], pool=pool) for _ in range(50)]
    for ref in refs:
        ref.tell("work")
    assert refs[-1].ask("sync", timeout=WAIT) == "sync"

    pool.shutdown(timeout=WAIT)

    assert not any(ref.is_alive() for ref in refs)
    assert pool_threads(pool) == []
    with pytest.raises(pykka.ActorDeadError):
        Recorder.start([], pool=pool)


def test_the_default_pool_threads_end_when_its_last_actor_dies_of_a_failure():
    """The last actor leaves while its own thread is still busy with it: the threads
    waiting for work must hear that the pool is idle, not only the busy one."""
    pool = default_pool()
    idle = [Recorder.start([]) for _ in range(8)]
    assert all(ref.ask("warm", timeout=WAIT) == "warm" for ref in idle)
    for ref in idle:
        ref.stop(block=True, timeout=WAIT)
    failing = Recorder.start([])

    failing.tell("boom")

    assert failing.actor_stopped.wait(WAIT)
    wait_until(lambda: not pool_threads(pool))
