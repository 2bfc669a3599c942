"""Pooled actors: many actors on a few threads, as Erlang processes and Akka actors run.

A ``PooledActor`` is a pykka actor like any other (``start``, ``tell``, ``ask``, ``stop``,
proxies, ``on_start``/``on_stop``/``on_failure``), built on pykka's extension points
(``_create_actor_inbox``, ``_create_future``, ``_start_actor_loop``). Each has its own
inbox and handles its messages one at a time, but it owns no thread: an ``ActorPool``'s
few threads run whichever actors have messages. An actor is put on the pool's run queue
when a message arrives and it is not queued or running already, so no two threads are
ever inside one actor, and it handles at most ``SLICE`` messages before the thread moves
on to the next actor (an actor with a long inbox cannot starve the others).

A pooled actor must never block a pool thread waiting on another actor (a few such waits
and every pool thread is stuck). Its waits become messages instead: a handler written as
a generator yields an ``Await`` (send this message; its answer comes back to me as a
message) and is resumed with the answer when it arrives, or has the error thrown in. While
a handler is suspended, every other message for that actor is held in order ("stashed")
and handled once the handler has finished, so the actor's logic stays sequential, exactly
as if it had blocked; a stop is not held (a stopping actor abandons the step it is in).

Pooled actors are not registered in pykka's ``ActorRegistry`` (whose removal is a linear
scan of every actor): each pool keeps its live actors in a dict, so starting and stopping
one costs the same with 10 or 10,000 alive. ``live_actors()`` lists them all.

Pools: whoever owns one (the supervisor) makes it with ``keep_threads=True`` and calls
``shutdown()``, which stops its live actors and joins its threads. The shared default
pool (``default_pool()``, for actors started without one, e.g. in tests) starts its threads
when work arrives and lets them end when its last actor has stopped.
"""
from __future__ import annotations

import logging
import sys
import threading
import time
import weakref
from contextlib import suppress
from dataclasses import dataclass, replace
from itertools import count
from queue import SimpleQueue
from types import GeneratorType
from typing import Any, ClassVar, Generator

import pykka
from pykka import ActorDeadError, ActorRef
from pykka._envelope import Envelope
from pykka.messages import _ActorStop

log = logging.getLogger("oms.runtime")

DEFAULT_THREADS = 4
# Messages one actor handles before its thread turns to the next actor in the run queue.
SLICE = 32

_urns = count(1)
_pools: weakref.WeakSet[ActorPool] = weakref.WeakSet()
_default: ActorPool | None = None
_default_lock = threading.Lock()
_events_lock = threading.Lock()


# --- waits as messages ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Await:
    """Yielded by a pooled actor's handler: send ``message`` to ``to`` with a reply that
    comes back to this actor as a message, and resume the handler with its value (or
    throw its error into the handler). ``reply_field`` names the message's field that
    carries the reply (its receiver completes it like a future, with ``set`` or
    ``set_exception``); ``None`` asks instead, the answer being the receiver's return
    value. A receiver that is not running raises ActorDeadError into the handler."""

    to: ActorRef
    message: Any
    reply_field: str | None = "reply"


@dataclass(frozen=True, slots=True)
class Answered:
    """The answer to an Await, as a message to the actor that awaits it."""

    token: int
    value: Any = None


@dataclass(frozen=True, slots=True)
class Failed:
    """The error that answered an Await, as a message to the actor that awaits it."""

    token: int
    error: BaseException


class MessageReply:
    """Stands where a future would (``set``, ``set_exception``): completing it tells the
    awaiting actor Answered or Failed. Like a future, it answers once. A receiver that
    treats it as a future (the journal, the position keeper, pykka's ask) needs nothing
    else."""

    __slots__ = ("_to", "_token", "_done")

    def __init__(self, to: ActorRef, token: int) -> None:
        self._to = to
        self._token = token
        self._done = False

    def _tell(self, message: Answered | Failed) -> None:
        if self._done:
            raise RuntimeError("already answered")
        self._done = True
        try:
            self._to.tell(message)
        except ActorDeadError:
            pass  # it stopped meanwhile: nobody is left to hear the answer

    def set(self, value: Any = None) -> None:
        self._tell(Answered(self._token, value))

    def set_exception(self, exc_info: Any = None) -> None:
        if exc_info is None:
            exc_info = sys.exc_info()
        error = exc_info[1] if isinstance(exc_info, tuple) else exc_info
        if error is None and isinstance(exc_info, tuple) and exc_info[0] is not None:
            error = exc_info[0]()
        self._tell(Failed(self._token, error if error is not None else RuntimeError("failed")))

    def get(self, timeout: float | None = None) -> Any:
        raise TypeError("a MessageReply is answered by message, never waited on")


@dataclass(slots=True)
class _Step:
    """A handler suspended on an Await: the generator, the envelope it handles (an ask's
    reply goes out when the handler returns) and the token its answer will carry."""

    handler: Generator[Await, Any, Any]
    envelope: Envelope[Any]
    token: int


# --- the pieces pykka asks an actor type for ----------------------------------------------


class _Stopped:
    """``threading.Event``'s interface at a fraction of its size: the Event (a Condition
    and its lock) is made only when somebody waits on it."""

    __slots__ = ("_flag", "_event")

    def __init__(self) -> None:
        self._flag = False
        self._event: threading.Event | None = None

    def is_set(self) -> bool:
        return self._flag

    def set(self) -> None:
        with _events_lock:
            self._flag = True
            event = self._event
        if event is not None:
            event.set()

    def wait(self, timeout: float | None = None) -> bool:
        with _events_lock:
            if self._flag:
                return True
            if self._event is None:
                self._event = threading.Event()
            event = self._event
        return event.wait(timeout)


class _Inbox:
    """One actor's inbox: a list (appends and pops are atomic under the GIL); a put
    puts the actor on its pool's run queue if it is not there already."""

    __slots__ = ("actor", "envelopes")

    def __init__(self, actor: PooledActor) -> None:
        self.actor = actor
        self.envelopes: list[Envelope[Any]] = []

    def put(self, envelope: Envelope[Any], /) -> None:
        self.envelopes.append(envelope)
        self.actor._pool._schedule(self.actor)

    def get(self) -> Envelope[Any]:
        return self.envelopes.pop(0)

    def empty(self) -> bool:
        return not self.envelopes


# --- the pool ------------------------------------------------------------------------------


class ActorPool:
    """A fixed number of threads that run pooled actors, and the actors alive on them.

    ``threads`` threads at most, started when the first work arrives. With
    ``keep_threads`` (an owned pool) they live until ``shutdown()``; without it (the
    default pool) they end whenever no actor lives on the pool.
    """

    def __init__(self, threads: int = DEFAULT_THREADS, name: str = "pooled", *, keep_threads: bool = True) -> None:
        if threads < 1:
            raise ValueError(f"threads: at least 1, got {threads}")
        self.size = threads
        self.name = name
        self._keep_threads = keep_threads
        # Guards the actors' ``_queued`` flags, the threads, the live actors and
        # ``_closed``; the run queue itself is a SimpleQueue (its put and get are C).
        self._lock = threading.Lock()
        self._ready: SimpleQueue[PooledActor | None] = SimpleQueue()  # None: "end, if idle"
        self._threads: list[threading.Thread] = []
        self._started_threads = count(1)
        self._live: dict[str, ActorRef] = {}  # urn -> ref, in start order; O(1) either way
        self._pending = 0  # actors queued or running
        self._closed = False
        _pools.add(self)

    def __repr__(self) -> str:
        return f"<ActorPool {self.name}: {len(self._threads)} threads, {len(self._live)} actors>"

    # --- actors ----------------------------------------------------------------------

    def live(self) -> list[ActorRef]:
        """The actors alive on this pool, in start order."""
        with self._lock:
            return list(self._live.values())

    def __len__(self) -> int:
        return len(self._live)

    def __bool__(self) -> bool:
        return True  # a pool with no actors is still a pool

    def _register(self, actor: PooledActor) -> None:
        with self._lock:
            if self._closed:
                raise ActorDeadError(f"{self!r} is shut down: no actor can start on it")
            self._live[actor.actor_urn] = actor.actor_ref

    def _unregister(self, actor: PooledActor) -> None:
        with self._lock:
            self._live.pop(actor.actor_urn, None)
            if not self._live and not self._keep_threads:
                for _ in self._threads:
                    self._ready.put(None)  # idle threads may end

    def stop_all(self, timeout: float = 30.0) -> int:
        """Stop every actor alive on the pool (each drains the messages told before) and
        wait for them, ``timeout`` seconds in all; answers how many were stopped."""
        refs = self.live()
        futures = []
        for ref in refs:
            try:
                futures.append(ref.stop(block=False))
            except ActorDeadError:
                continue
        deadline = time.monotonic() + timeout
        for future in futures:
            try:
                future.get(timeout=max(0.0, deadline - time.monotonic()))
            except Exception:
                log.exception("a pooled actor did not stop cleanly")
        return len(refs)

    def shutdown(self, timeout: float = 30.0) -> None:
        """Stop the pool's actors, then its threads, and wait for both."""
        self.stop_all(timeout)
        with self._lock:
            self._closed = True
            threads = list(self._threads)
            for _ in threads:
                self._ready.put(None)
        me = threading.current_thread()
        for thread in threads:
            if thread is not me:
                thread.join(timeout)

    # --- running -----------------------------------------------------------------------

    def _schedule(self, actor: PooledActor) -> None:
        with self._lock:
            if actor._queued:
                return
            if self._closed:
                closed = True
            else:
                closed = False
                actor._queued = True
                self._pending += 1
                self._ready.put(actor)
                if len(self._threads) < self.size:
                    self._start_thread()
        if closed:
            actor._drain(ActorDeadError(f"{actor} stopped: its pool is shut down"))

    def _start_thread(self) -> None:
        # Called with the lock held.
        thread = threading.Thread(target=self._run, name=f"{self.name}-{next(self._started_threads)}")
        self._threads.append(thread)
        thread.start()

    def _idle(self) -> bool:
        """Whether a thread may end now (called with the lock held)."""
        return self._closed or (not self._keep_threads and not self._live and not self._pending)

    def _run(self) -> None:
        me = threading.current_thread()
        ready = self._ready
        while True:
            actor = ready.get()
            if actor is None:
                with self._lock:
                    if self._idle():
                        self._threads.remove(me)
                        return
                continue
            try:
                actor._run_slice(SLICE)
            except BaseException:  # the actor's own failures are handled inside it
                log.exception("pool thread %s: %s failed outside its handlers", me.name, actor)
            with self._lock:
                closed, more = self._closed, bool(actor._inbox.envelopes)
                if more and not closed:
                    ready.put(actor)  # more to do, after the others had their turn
                else:
                    actor._queued = False
                    self._pending -= 1
                ending = not self._keep_threads and self._idle()
                if ending:
                    self._threads.remove(me)
                    for _ in self._threads:
                        ready.put(None)  # the others, waiting for work, may end too
            if more and closed:
                actor._drain(ActorDeadError(f"{actor} stopped: its pool is shut down"))
            if ending:
                return


def default_pool() -> ActorPool:
    """The pool of actors started without one: its threads come and go with its actors."""
    global _default
    with _default_lock:
        if _default is None:
            _default = ActorPool(DEFAULT_THREADS, name="pooled-default", keep_threads=False)
        return _default


def live_actors() -> list[ActorRef]:
    """Every pooled actor alive, on any pool."""
    return [ref for pool in list(_pools) for ref in pool.live()]


# --- the actor type ----------------------------------------------------------------------


class PooledActor(pykka.Actor):
    """A pykka actor that runs on an ActorPool's threads instead of a thread of its own.

    Start it as any actor; ``pool=`` picks the pool (the class attribute ``pool``, else the
    default pool). Handlers that must wait for another actor are generators that yield
    ``Await`` (see the module's docstring). An exception in a told message's handler (or
    in the rest of a suspended handler) calls ``on_failure`` and stops this actor, as a
    ThreadingActor does; in an asked one it goes back to the asker.
    """

    pool: ClassVar[ActorPool | None] = None

    def __init__(self, *_args: Any, pool: ActorPool | None = None, **_kwargs: Any) -> None:
        # pykka.Actor.__init__, made cheaper: a short urn, and the stopped flag's Event
        # only when waited on (a tracker per live order makes every byte count).
        self._pool = pool if pool is not None else (type(self).pool or default_pool())
        self.actor_urn = f"urn:pooled:{next(_urns)}"
        self._inbox = _Inbox(self)
        self.actor_inbox = self._inbox
        self.actor_stopped = _Stopped()  # type: ignore[assignment]
        self._actor_ref = ActorRef(self)
        self._queued = False  # on the run queue or running: guarded by the pool's lock
        self._started = False
        self._step: _Step | None = None
        self._stash: list[Envelope[Any]] | None = None
        self._tokens = 0

    @classmethod
    def start(cls, *args: Any, **kwargs: Any) -> ActorRef:
        """Start the actor on its pool (not registered in pykka's ActorRegistry)."""
        actor = cls(*args, **kwargs)
        actor._start_actor_loop()
        return actor.actor_ref

    @staticmethod
    def _create_actor_inbox() -> Any:
        raise TypeError("a pooled actor makes its inbox in __init__ (it needs the actor)")

    @staticmethod
    def _create_future() -> pykka.Future[Any]:
        return pykka.ThreadingFuture()

    def _start_actor_loop(self) -> None:
        self._pool._register(self)
        if type(self).on_start is pykka.Actor.on_start:
            self._started = True  # nothing to run before the first message
        else:
            self._pool._schedule(self)  # on_start runs on the pool before the first message

    # --- pykka's lifecycle, on the pool ------------------------------------------------

    def _stop(self) -> None:
        self._pool._unregister(self)
        self.actor_stopped.set()
        self._abandon_step()
        try:
            self.on_stop()
        except Exception:
            self._handle_failure(*sys.exc_info())

    def _handle_failure(self, exception_type: Any, exception_value: Any, traceback: Any) -> None:
        logging.getLogger("pykka").error(
            f"Unhandled exception in {self}:", exc_info=(exception_type, exception_value, traceback),
        )
        self._pool._unregister(self)
        self.actor_stopped.set()
        self._abandon_step()

    def _abandon_step(self) -> None:
        """A stop is not held behind a suspended step: the step is given up (its handler
        closed) and whoever waits on its message is answered."""
        step, self._step = self._step, None
        if step is not None:
            step.handler.close()
            if step.envelope.reply_to is not None:
                _reply_dead(step.envelope, f"{self} stopped before it finished the message")
            else:
                self.undelivered(step.envelope.message)

    def _run_slice(self, budget: int) -> None:
        if not self._started:
            self._started = True
            self._actor_loop_setup()
        envelopes = self._inbox.envelopes
        while budget > 0 and envelopes and not self.actor_stopped.is_set():
            self._handle_envelope(envelopes.pop(0))
            budget -= 1
        if self.actor_stopped.is_set():
            self._drain(None)

    def _drain(self, error: BaseException | None) -> None:
        """Answer what can no longer be handled: asks fail with ActorDeadError (a stop
        asked of a stopped actor is answered None, as pykka does)."""
        stash, self._stash = self._stash or [], None
        envelopes = self._inbox.envelopes
        pending = [*stash]
        while envelopes:
            pending.append(envelopes.pop(0))
        for envelope in pending:
            if envelope.reply_to is not None:
                if isinstance(envelope.message, _ActorStop):
                    envelope.reply_to.set(None)
                else:
                    _reply_dead(envelope, str(error) if error else f"{self} stopped before handling the message")
            elif not isinstance(envelope.message, (Answered, Failed, _ActorStop)):
                self.undelivered(envelope.message)

    def undelivered(self, message: Any) -> None:
        """A told message this actor stopped before handling, or before it finished
        handling it (override to answer whoever waits on it)."""

    # --- handling one message ----------------------------------------------------------

    def _handle_envelope(self, envelope: Envelope[Any]) -> None:
        message = envelope.message
        step = self._step
        if step is not None:
            if isinstance(message, (Answered, Failed)) and message.token == step.token:
                if isinstance(message, Answered):
                    self._advance(step.handler, step.envelope, message.value, None)
                else:
                    self._advance(step.handler, step.envelope, None, message.error)
                self._unstash()
            elif isinstance(message, _ActorStop):
                self._deliver(envelope)  # a stop is not held: the step is abandoned
            else:
                if self._stash is None:
                    self._stash = []
                self._stash.append(envelope)
            return
        if isinstance(message, (Answered, Failed)):
            log.debug("%s: late answer %r dropped", self, message)
            return
        self._deliver(envelope)

    def _unstash(self) -> None:
        """Handle the messages held while a step waited, in order, until one suspends."""
        while self._step is None and self._stash and not self.actor_stopped.is_set():
            envelope = self._stash.pop(0)
            self._deliver(envelope)
        if not self._stash:
            self._stash = None

    def _deliver(self, envelope: Envelope[Any]) -> None:
        try:
            result = self._handle_receive(envelope.message)
        except Exception:
            self._failed(envelope)
            return
        except BaseException:
            self._fatal()
            return
        if isinstance(result, GeneratorType):
            self._advance(result, envelope, None, None)
        elif envelope.reply_to is not None:
            envelope.reply_to.set(result)

    def _advance(self, handler: Generator[Await, Any, Any], envelope: Envelope[Any], value: Any, error: BaseException | None) -> None:
        """Run the handler on until it awaits something (sent now) or returns."""
        self._step = None
        while True:
            try:
                awaited = handler.throw(error) if error is not None else handler.send(value)
            except StopIteration as done:
                if envelope.reply_to is not None:
                    envelope.reply_to.set(done.value)
                return
            except Exception:
                self._failed(envelope)
                return
            except BaseException:
                self._fatal()
                return
            self._tokens += 1
            token = self._tokens
            try:
                self._send(awaited, MessageReply(self._actor_ref, token))
            except Exception as sending:  # e.g. ActorDeadError: raised in the handler
                value, error = None, sending
                continue
            self._step = _Step(handler, envelope, token)
            return

    @staticmethod
    def _send(awaited: Await, reply: MessageReply) -> None:
        if not isinstance(awaited, Await):
            raise TypeError(f"a pooled actor's handler yields Await, not {type(awaited).__name__}")
        if awaited.reply_field is not None:
            awaited.to.tell(replace(awaited.message, **{awaited.reply_field: reply}))
            return
        if not awaited.to.is_alive():
            raise ActorDeadError(f"{awaited.to} not found")
        awaited.to.actor_inbox.put(Envelope(awaited.message, reply_to=reply))  # type: ignore[arg-type]

    def _failed(self, envelope: Envelope[Any]) -> None:
        """pykka's rule: an asker hears the error; a told message's failure stops us."""
        exc_info = sys.exc_info()
        if envelope.reply_to is not None:
            log.info("exception returned from %s to its caller", self, exc_info=exc_info)
            envelope.reply_to.set_exception(exc_info)
            return
        self._handle_failure(*exc_info)
        try:
            self.on_failure(*exc_info)
        except Exception:
            self._handle_failure(*sys.exc_info())

    def _fatal(self) -> None:
        # pykka's rule for BaseException (KeyboardInterrupt, SystemExit): stop everything.
        log.debug("%r in %s: stopping every actor", sys.exc_info()[1], self)
        self._stop()
        pykka.ActorRegistry.stop_all(block=False)
        for ref in live_actors():
            with suppress(ActorDeadError):  # it stopped on its own meanwhile: nothing to do
                ref.stop(block=False)


def _reply_dead(envelope: Envelope[Any], why: str) -> None:
    try:
        envelope.reply_to.set_exception((ActorDeadError, ActorDeadError(why), None))  # type: ignore[union-attr]
    except Exception:
        pass  # answered already
