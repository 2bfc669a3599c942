"""What every OMS actor shares: failures are logged with the message that caused them
and reported to the supervisor, which decides what happens next."""
from __future__ import annotations

import logging
import queue
import threading
from types import GeneratorType
from typing import Any, Callable

import pykka

from actors.runtime import PooledActor

log = logging.getLogger("oms.actors")


def tell_quietly(ref: pykka.ActorRef | None, message: Any) -> bool:
    """Tell ``ref`` if it is still alive. During shutdown, or after an order tracker
    finished, a late message has no one to hear it; that is not an error."""
    if ref is None:
        return False
    try:
        ref.tell(message)
        return True
    except pykka.ActorDeadError:
        return False


class NextTick:
    """One message told to an actor ``seconds`` from now, on a daemon timer thread: the
    periodic work of an actor that reschedules it after each tick. Asked again before it
    fired, the wait starts afresh; ``stop`` ends it for good and waits for its thread.
    ``seconds`` of 0 or less: never. Used from its actor's thread only."""

    def __init__(self, seconds: float, name: str) -> None:
        self._seconds = seconds
        self._name = name
        self._timer: threading.Timer | None = None
        self._stopped = False

    def after(self, ref: pykka.ActorRef, message: Any) -> None:
        if self._seconds <= 0 or self._stopped:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer = threading.Timer(self._seconds, lambda: tell_quietly(ref, message))
        self._timer.daemon = True
        self._timer.name = self._name
        self._timer.start()

    def stop(self) -> None:
        self._stopped = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer.join(1)


def brief(message: Any) -> str:
    """A message as a log line names it: its type and the order it is about (a whole
    order with its validation result would fill a screen)."""
    if message is None:
        return "nothing"
    order_id = getattr(message, "order_id", None)
    if order_id is None:
        for inner in ("order", "pending", "fill", "event"):
            order_id = getattr(getattr(message, inner, None), "order_id", None)
            if order_id is not None:
                break
    facts = [f"order {order_id}"] if order_id is not None else []
    for attribute in ("trade_id", "tag", "broker_order_id"):
        value = getattr(message, attribute, None)
        if value is not None:
            facts.append(f"{attribute} {value}")
    return f"{type(message).__name__}({', '.join(facts)})"


def fail(reply: pykka.Future, error: BaseException) -> None:
    """Complete ``reply`` with ``error`` (raised in the waiting caller's thread)."""
    try:
        reply.set_exception((type(error), error, error.__traceback__))
    except Exception:  # already completed: the first answer stands
        log.debug("reply already completed; dropping %r", error)


def answer(reply: pykka.Future, value: Any) -> None:
    try:
        reply.set(value)
    except Exception:
        log.debug("reply already completed; dropping %r", value)


class OMSBehaviour:
    """What every OMS actor does, whatever runs it (a thread of its own: OMSActor; a
    shared pool: PooledOMSActor). Dispatches each message to ``handlers[type(message)]``.

    An exception while handling an *asked* message goes back to the asker and the actor
    carries on (pykka's rule). For a *told* message:

    * an actor that ``heals`` (the shared actors) is restarted in place: it logs the
      failure, tells the supervisor ChildRestarted (which keeps the restart budget),
      rebuilds its state from durable state (``restart``) and handles the message once
      more. Its thread and inbox live on, so no message waiting behind the failed one
      is lost. If the message fails again, ``give_up`` answers whoever waits on it.
    * any other actor stops (pykka's rule); ``on_failure`` logs the message and tells
      the supervisor ChildFailed, which decides what happens next (a tracker is started
      again from the database).

    ``asked`` lists the message types this actor is only ever asked.
    """

    handlers: dict[type, Callable[[Any, Any], Any]] = {}
    supervisor: pykka.ActorRef | None = None
    order_id: int | None = None
    heals: bool = False
    asked: tuple[type, ...] = ()
    retries_after_restart: bool = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._current: Any = None

    def on_receive(self, message: Any) -> Any:
        handler = self.handlers.get(type(message))
        if handler is None:
            raise TypeError(f"{type(self).__name__} does not handle {type(message).__name__}")
        self._current = message
        if not self.heals or isinstance(message, self.asked):
            result = handler(self, message)
            if type(result) is not GeneratorType:  # a suspended step may still fail
                self._current = None  # kept on an exception: on_failure reports it
            return result
        try:
            result = handler(self, message)
        except Exception as error:
            result = self._heal(handler, message, error)
        self._current = None
        return result

    def _heal(self, handler: Callable[[Any, Any], Any], message: Any, error: Exception) -> Any:
        name = type(self).__name__
        log.error("%s failed while handling %s: %r; restarting it from durable state", name, brief(message), error)
        from actors.messages import ChildRestarted  # local: messages imports nothing of ours

        tell_quietly(self.supervisor, ChildRestarted(name, brief(message), repr(error)))
        try:
            self.restart()
            if not self.retries_after_restart:
                raise error
            return handler(self, message)
        except Exception as again:
            log.error("%s failed again on %s after a restart: %r; giving the message up", name, brief(message), again)
            self.give_up(message, again)
            return None

    def restart(self) -> None:
        """Rebuild this actor's state from durable state (the shared actors override it)."""

    def give_up(self, message: Any, error: Exception) -> None:
        """Answer whoever waits on ``message``, which could not be handled."""
        reply = getattr(message, "reply", None)
        if reply is not None:
            fail(reply, error)

    def on_failure(self, exception_type, exception_value, traceback) -> None:
        log.error("%s failed while handling %s: %r", type(self).__name__, brief(self._current), exception_value)
        from actors.messages import ChildFailed  # local: messages imports nothing of ours

        tell_quietly(
            self.supervisor,
            ChildFailed(type(self).__name__, self.order_id, brief(self._current), repr(exception_value)),
        )


class OMSActor(OMSBehaviour, pykka.ThreadingActor):
    """An OMS actor on a thread of its own (the shared actors: one each)."""

    @staticmethod
    def _create_actor_inbox() -> Any:
        # pykka's is a queue.Queue (a lock and two Conditions in Python); every message
        # to a shared actor goes through it, so the C SimpleQueue saves on each one.
        return queue.SimpleQueue()

    def _actor_loop_teardown(self) -> None:
        """pykka answers the asks left in a stopped actor's inbox; the writes and
        commands told with a ``reply`` are answered too (an order tracker waits for its
        commit as a message, and would otherwise wait for ever)."""
        while not self.actor_inbox.empty():
            envelope = self.actor_inbox.get()
            dead = pykka.ActorDeadError(f"{self.actor_ref} stopped before handling {brief(envelope.message)}")
            if envelope.reply_to is not None:
                if isinstance(envelope.message, pykka.messages._ActorStop):
                    envelope.reply_to.set(None)
                else:
                    fail(envelope.reply_to, dead)
                continue
            reply = getattr(envelope.message, "reply", None)
            if reply is not None and callable(getattr(reply, "set_exception", None)):
                fail(reply, dead)


class PooledOMSActor(OMSBehaviour, PooledActor):
    """An OMS actor on a shared pool of threads (an order tracker per order). Its
    handlers never block on another actor: they yield ``actors.runtime.Await``."""


def handles(*message_types: type) -> Callable:
    """Mark a method as the handler of ``message_types`` (collected by ``dispatch``)."""

    def mark(method: Callable) -> Callable:
        method._handles = message_types  # type: ignore[attr-defined]
        return method

    return mark


def dispatch(cls: type[OMSBehaviour]) -> type[OMSBehaviour]:
    """Class decorator: build ``handlers`` from the methods marked with ``@handles``."""
    table: dict[type, Callable] = {}
    for klass in reversed(cls.__mro__):
        for attr in vars(klass).values():
            for message_type in getattr(attr, "_handles", ()):
                table[message_type] = attr
    cls.handlers = table
    return cls

