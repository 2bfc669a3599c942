"""DemoStrategy: the demo's scripted strategy, a pykka actor that trades by message only.

It sends the supervisor the commands of ``actors.trading`` (PlaceOrder, CancelOrder,
ModifyOrder, each with ``reply_to`` = itself and a correlation id) and hears every answer
and event as a message. It never blocks and holds no future: a step that waits for an
order to fill is a condition checked again as each message arrives.

The driver tells it NextStep(step) and reads what it reports from a queue: Outcome,
OrderSeen, Surprise, then StepDone once the step has settled (StrategyFailed if it died).
"""
from __future__ import annotations

import logging
import queue
from collections.abc import Callable
from decimal import Decimal
from typing import Any, Literal

import pykka

from actors.trading import (
    CancelAccepted,
    CancelOrder,
    ModifyAccepted,
    ModifyOrder,
    OrderAccepted,
    OrderChanged,
    OrderFilled,
    OrderRefused,
    PlaceOrder,
    Subscribe,
)
from domain.enums import Exchange, OrderStatus, OrderType, Product, Side
from domain.order import Order
from domain.order_request import OrderRequest
from domain.position import Position, PositionKey, apply_fill
from strategies.demo_messages import (
    NextStep,
    OrderSeen,
    Outcome,
    StepDone,
    StrategyFailed,
    Surprise,
)
from strategies.demo_script import (
    FILLED,
    AwaitStep,
    CancelStep,
    CloseStep,
    ModifyStep,
    OrderSpec,
    PlaceStep,
    SquareOffStep,
    StrategyStep,
    Until,
)
from strategies.figures import money, price

log = logging.getLogger("oms.strategy.demo")

STRATEGY_ID = 1
STRATEGY_NAME = "demo"
REFUSED = Until(OrderStatus.REJECTED)


class DemoStrategy(pykka.ThreadingActor):
    """Owns its orders as last committed (by id, and by the labels the script gives them),
    its own books (net holding and gross realized P&L per position, from its fills), and
    the step in progress with what that step still waits for.

    Takes NextStep from the driver; from the OMS the answers OrderAccepted, OrderRefused,
    CancelAccepted, ModifyAccepted and the events OrderChanged and OrderFilled of its own
    orders (it subscribes with its strategy_id as it starts). Reports to ``reports``.
    """

    def __init__(self, oms: pykka.ActorRef, reports: "queue.Queue[Any]",
                 strategy_id: int = STRATEGY_ID, name: str = STRATEGY_NAME) -> None:
        super().__init__()
        self._oms = oms
        self._reports = reports
        self._strategy_id = strategy_id
        self._name = name
        self._orders: dict[int, Order] = {}
        self._labels: dict[str, int] = {}
        self._fills_heard: dict[int, int] = {}  # order id -> shares heard of in OrderFilled
        self._books: dict[PositionKey, Position] = {}
        # The step in progress: the answers it awaits (by correlation id), the state each
        # of its orders must reach (by label), and why the rest of its scene is off.
        self._step: StrategyStep | None = None
        self._answers: set[tuple[str, str]] = set()
        self._until: dict[str, Until] = {}
        self._abandoned: str | None = None
        self._handlers: dict[type, Callable[[Any], None]] = {
            NextStep: self._next_step, OrderAccepted: self._accepted, OrderRefused: self._refused,
            CancelAccepted: self._cancel_accepted, ModifyAccepted: self._modify_accepted,
            OrderChanged: self._changed, OrderFilled: self._filled,
        }

    def on_start(self) -> None:
        # Told before any PlaceOrder of ours, so the supervisor has it first.
        self._oms.tell(Subscribe(self.actor_ref, strategy_id=self._strategy_id))

    def on_failure(self, exception_type, exception_value, traceback) -> None:
        log.error("the demo strategy failed", exc_info=(exception_type, exception_value, traceback))
        self._reports.put(StrategyFailed(f"{exception_type.__name__}: {exception_value}"))

    def on_receive(self, message: Any) -> None:
        handler = self._handlers.get(type(message))
        if handler is None:
            log.warning("demo strategy: ignoring %r", message)
            return
        handler(message)
        self._settle()

    # --- steps ------------------------------------------------------------------------

    def _next_step(self, message: NextStep) -> None:
        if self._step is not None:
            raise RuntimeError(f"NextStep while {self._step} has not settled")
        self._step, self._abandoned = message.step, None
        match message.step:
            case PlaceStep(label=label, order=spec):
                self._place(label, spec)
            case AwaitStep(label=label, until=until):
                if self._order_id(label) is not None:
                    self._until[label] = until
            case ModifyStep(label=label, new_price=new_price):
                order_id = self._order_id(label)
                if order_id is not None:
                    self._say(f"modify #{order_id}: price {price(self._orders[order_id].price)} -> {price(new_price)}")
                    self._send(ModifyOrder(order_id, new_price=new_price, reply_to=self.actor_ref,
                                           correlation_id=("modify", label)))
                    # Known now: its OrderChanged may come before or after ModifyAccepted.
                    done = self._orders[order_id].modification_count + 1
                    self._until[label] = Until(modifications_at_least=done)
            case CancelStep(label=label, until=until):
                order_id = self._order_id(label)
                if order_id is not None:
                    self._say(f"cancel #{order_id}")
                    self._send(CancelOrder(order_id, reply_to=self.actor_ref, correlation_id=("cancel", label)))
                    self._until[label] = until
            case CloseStep():
                self._close(message.step)
            case SquareOffStep(product=product):
                self._square_off(Product(product))

    def _settle(self) -> None:
        """Report StepDone once every answer is in and every order the step waits on is
        where it should be, with all of its fills heard."""
        if self._step is None or self._answers:
            return
        for label, until in list(self._until.items()):
            order = self._orders.get(self._labels.get(label, -1))
            if order is None or self._fills_heard.get(order.order_id, 0) < order.filled_quantity:
                return  # its events are still on their way
            if until.met(order):
                continue
            if not order.is_terminal:
                return
            self._surprise(f"#{order.order_id} ended {order.status.value}, expected {until.describe()}")
            self._abandon(f"#{order.order_id} ended {order.status.value}")
            del self._until[label]
        for label, until in self._until.items():
            if until.status in (OrderStatus.FILLED, OrderStatus.CANCELLED) or until.filled_at_least:
                self._say(self._state_line(self._orders[self._labels[label]]))
        if self._abandoned is None and isinstance(self._step, CloseStep):
            self._judge(self._step)
        self._reports.put(StepDone(self._abandoned))
        self._step, self._until = None, {}

    def _abandon(self, why: str) -> None:
        self._abandoned = self._abandoned or why

    def _order_id(self, label: str) -> int | None:
        order_id = self._labels.get(label)
        if order_id is None:
            self._abandon(f"no order {label!r} to act on")
        return order_id

    # --- placing ----------------------------------------------------------------------

    def _request(self, spec: OrderSpec) -> OrderRequest:
        return OrderRequest(
            symbol=spec.symbol, side=Side(spec.side), quantity=spec.quantity, order_type=OrderType(spec.order_type),
            price=spec.price, stop_loss=spec.stop_loss, product=Product(spec.product),
            strategy_id=self._strategy_id, metadata={"strategy": self._name},
        )

    def _place(self, label: str, spec: OrderSpec) -> None:
        self._say(f"place {spec.describe()}")
        try:
            request = self._request(spec)
        except ValueError as error:  # the OMS is never asked: the request names its bad field
            self._surprise(f"{spec.describe()} is not a valid order: {error}")
            self._abandon(f"{label!r} could not be placed")
            return
        self._send(PlaceOrder(request, reply_to=self.actor_ref, correlation_id=("place", label)))

    def _send(self, command: PlaceOrder | CancelOrder | ModifyOrder) -> None:
        """Tell the OMS ``command``; the step waits for its answer, which comes as a message."""
        self._answers.add(command.correlation_id)
        self._oms.tell(command)

    def _answered(self, correlation_id: tuple[str, str]) -> str:
        self._answers.discard(correlation_id)
        return correlation_id[1]

    def _expected_refusal(self, label: str) -> str | None:
        step = self._step
        return step.refused_by if isinstance(step, PlaceStep) and step.label == label else None

    def _accepted(self, message: OrderAccepted) -> None:
        label = self._answered(message.correlation_id)
        result = message.result
        self._labels[label] = result.order_id
        self._say(f"-> #{result.order_id} {result.status.value} (broker id {result.broker_order_id}): {result.message}")
        expected = self._expected_refusal(label)
        if expected == "broker":
            # Kite's risk system refuses after taking the order: accepted, then REJECTED.
            self._until[label] = REFUSED
            return
        if expected is not None:
            self._surprise(f"#{result.order_id} accepted, expected a refusal by {expected}")
            return
        step = self._step
        self._until[label] = step.until if isinstance(step, PlaceStep) else FILLED

    def _refused(self, message: OrderRefused) -> None:
        verb, label = message.correlation_id
        self._answered(message.correlation_id)
        self._say(f"REFUSED [{message.failed_check}] {message.reason}")
        if verb != "place":
            self._surprise(f"{verb} of {label!r} refused: {message.reason}")
            self._abandon(f"the {verb} was refused")
            return
        expected = self._expected_refusal(label)
        if message.order_id is not None:
            self._labels[label] = message.order_id
            self._until[label] = REFUSED  # its REJECTED event belongs to this step too
        if expected != message.failed_check:
            self._surprise(f"{label!r} refused by {message.failed_check}, expected {expected or 'acceptance'}")
            self._abandon(f"{label!r} was not accepted")

    def _modify_accepted(self, message: ModifyAccepted) -> None:
        self._answered(message.correlation_id)
        self._say(f"-> #{message.order_id} modification accepted by the broker")

    def _cancel_accepted(self, message: CancelAccepted) -> None:
        self._answered(message.correlation_id)
        self._say(f"-> #{message.order_id} cancel accepted by the broker")

    # --- closing positions from the strategy's own books ------------------------------------

    def _holding(self, symbol: str, product: Product) -> Position:
        key = (Exchange.NSE, symbol, product)
        return self._books.get(key) or Position(*key)

    def _exit(self, label: str, held: Position, order_type: str = "MARKET", limit: Decimal | None = None) -> None:
        side: Literal["BUY", "SELL"] = "SELL" if held.quantity > 0 else "BUY"
        self._place(label, OrderSpec(held.symbol, side, abs(held.quantity), order_type, limit,
                                     product=held.product.value))

    def _close(self, step: CloseStep) -> None:
        held = self._holding(step.symbol, Product(step.product))
        if held.quantity == 0:
            self._abandon(f"no {step.symbol} {step.product} holding to close")
            return
        self._exit(f"close {step.symbol}", held, step.order_type, step.price)

    def _judge(self, step: CloseStep) -> None:
        """Once the close has filled: did the round trip make what the script expected?"""
        after = self._holding(step.symbol, Product(step.product))
        made = after.realized_pnl
        self._say(f"-> {step.symbol} {step.product} closed: {money(made, sign=True)} before charges")
        if after.quantity != 0 or made == 0 or (made > 0) != (step.expect == "profit"):
            self._surprise(f"{step.symbol}: expected closed at a {step.expect}, "
                           f"holding {after.quantity}, realized {money(made, sign=True)}")

    def _square_off(self, product: Product) -> None:
        open_ = [p for p in self._books.values() if p.product is product and p.quantity != 0]
        if not open_:
            self._say(f"nothing to square off: no open {product.value} holding")
        for held in sorted(open_, key=lambda p: p.symbol):
            self._exit(f"square off {held.symbol}", held)

    # --- events -----------------------------------------------------------------------

    def _changed(self, message: OrderChanged) -> None:
        order = message.order
        before = self._orders.get(order.order_id)
        self._orders[order.order_id] = order
        self._reports.put(OrderSeen(order, _change_text(before, order)))

    def _filled(self, message: OrderFilled) -> None:
        order, fill = message.order, message.fill
        self._orders[order.order_id] = order
        self._fills_heard[order.order_id] = self._fills_heard.get(order.order_id, 0) + fill.quantity
        held = self._books.get(fill.position_key) or Position(*fill.position_key)
        self._books[fill.position_key] = apply_fill(held, fill.side, fill.quantity, fill.price).after
        self._reports.put(OrderSeen(order, (
            f"#{order.order_id} fill {fill.quantity} @ {price(fill.price)} "
            f"({order.filled_quantity}/{order.quantity} filled), charges {money(fill.charges.total)}"
        )))

    # --- reporting --------------------------------------------------------------------

    def _say(self, text: str) -> None:
        self._reports.put(Outcome(text))

    def _surprise(self, text: str) -> None:
        self._reports.put(Surprise(text))

    @staticmethod
    def _state_line(order: Order) -> str:
        return (f"-> #{order.order_id} {order.status.value} {order.filled_quantity}/{order.quantity} filled"
                + (f" @ {price(order.average_price)}" if order.filled_quantity else ""))


def _change_text(before: Order | None, order: Order) -> str | None:
    """An event line for a committed change worth showing (a status change or a
    modification); None for a change the fill lines already tell (or an annotation)."""
    head = f"#{order.order_id} {order.side.value} {order.quantity} {order.symbol}"
    if before is None:
        return f"{head}: {order.status.value}"
    changes = []
    if before.status is not order.status:
        changes.append(f"{before.status.value} -> {order.status.value}")
    if order.modification_count != before.modification_count:
        changes.append(f"modified: price {price(order.price)}")
    return f"{head}: {', '.join(changes)}" if changes else None
