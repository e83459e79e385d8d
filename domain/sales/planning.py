"""Every check of a sale, and its priced plan, before anything is written (CHECK-THEN-ACT).

The sync reconciler applies many changes in one database transaction and relies on a refused change having
mutated nothing, so the functions here only read and lock: they resolve the records a request names
(inactive ones are `invalid_state`), price every line from the catalog and the customer's record, judge
the meter reading against the meter's last recorded one (`meter_regression`) and bill its usage from the
meter's last billed one, and check the truck's stock
(`insufficient_stock`). The customer site may go below zero: that is a warning, not a refusal.

Lock order, the same everywhere in this context: the customer row, the customer's meter rows, then the stock
rows (one `lock_stock_rows` call, in its sorted order). Nothing else locks a customer and then stock rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, NamedTuple

from sqlalchemy import select

from domain.catalog import lookups
from domain.catalog.models import Customer, EquipmentModel, Meter, Service, Truck
from domain.errors import InsufficientStock, InvalidState, MeterRegression, NotFound, ValidationError
from domain.ledger import unit_state
from domain.logistics.models import SiteStock, TruckStock
from domain.logistics.stock import StockKey, StockRow, lock_stock_rows, locked_stock
from domain.money import decimal_str
from domain.sales import pricing
from domain.sales.pricing import PricedLine, Totals
from domain.service import Call, warning

MAX_AMOUNT = Decimal("9999999999.99")  # what a money column holds


class DeliveryInput(NamedTuple):
    equipment: int | str
    kind: str
    qty: int
    remaining_kg: Decimal | None


class ServiceInput(NamedTuple):
    code: int | str
    qty: int


@dataclass(frozen=True)
class MeterPlan:
    meter: Meter | None  # None: the customer has no meter yet; one is created (serial unknown) on confirm
    reading: Decimal
    previous: Decimal | None
    line: PricedLine


@dataclass(frozen=True)
class DeliveryPlan:
    equipment: EquipmentModel
    kind: str
    qty: int
    remaining_kg: Decimal | None
    line: PricedLine


@dataclass(frozen=True)
class ServicePlan:
    service: Service
    qty: int
    line: PricedLine


@dataclass
class Plan:
    """A sale, checked and priced, not yet written."""

    customer: Customer
    truck: Truck
    meter: MeterPlan | None
    deliveries: list[DeliveryPlan]
    services: list[ServicePlan]
    sums: Totals
    stock: dict[StockKey, StockRow] = field(default_factory=dict)
    warnings: list[dict[str, Any]] = field(default_factory=list)

    @property
    def lines(self) -> list[PricedLine]:
        """The invoice's lines in order: usage, cylinders, services."""
        head = [self.meter.line] if self.meter is not None else []
        return head + [d.line for d in self.deliveries] + [s.line for s in self.services]

    def deltas(self) -> dict[StockKey, dict[str, int]]:
        """The stock movements of the sale, per row:
        full_deliver: truck.full -= qty, site.on_site += qty;
        empty_return and half_return: site.on_site -= qty, truck.empty += qty."""
        out: dict[StockKey, dict[str, int]] = {}

        def move(key: StockKey, column: str, qty: int) -> None:
            row = out.setdefault(key, {})
            row[column] = row.get(column, 0) + qty

        for d in self.deliveries:
            truck = StockKey("truck", self.truck.id, d.equipment.id)
            site = StockKey("site", self.customer.id, d.equipment.id)
            if d.kind == "full_deliver":
                move(truck, "full", -d.qty)
                move(site, "on_site", d.qty)
            else:
                move(site, "on_site", -d.qty)
                move(truck, "empty", d.qty)
        return out


def plan_sale(
    call: Call,
    customer_id: int,
    truck_id: int,
    reading: Decimal | None,
    deliveries: Sequence[DeliveryInput],
    services: Sequence[ServiceInput],
    *,
    lock: bool,
    judge_meter: bool = True,
) -> Plan:
    """Resolve, price and judge a sale. With `lock` (confirming) the customer's meter is row-locked so the
    regression check stays true until the commit; a draft is judged without locks (and again on confirm).
    An update that leaves a draft's reading alone does not judge it again (`judge_meter=False`): the
    driver may fix the other fields first; confirm judges it in any case."""
    session = call.session
    if reading is None and not deliveries and not services:
        raise ValidationError("a transaction needs a meter reading, a delivery or a service", "deliveries")
    lookups.warm_sale(session, customer_id, truck_id, [d.equipment for d in deliveries], [s.code for s in services])
    customer = lookups.customer(session, customer_id)
    truck = lookups.truck(session, truck_id)
    meter_plan = None
    if reading is not None:
        meter = customer_meter(call, customer.id, lock=lock)
        previous = billing_baseline(meter)
        if judge_meter:
            check_regression(customer.id, meter, reading)
        meter_plan = MeterPlan(meter, reading, previous, pricing.usage_line(reading, previous, customer.meter_rate))
    delivery_plans = [_price_delivery(call, customer, d) for d in deliveries]
    service_plans = []
    for s in services:
        item = lookups.service(session, s.code)
        fee = lookups.service_price(session, customer.id, item)
        service_plans.append(ServicePlan(item, s.qty, pricing.service_line(item.code, item.name, s.qty, fee)))
    plan = Plan(customer, truck, meter_plan, delivery_plans, service_plans, pricing.totals([], Decimal("0")))
    plan.sums = pricing.totals([line.amount for line in plan.lines], call.settings.gst_rate)
    for amount in (*(line.amount for line in plan.lines), plan.sums.subtotal, plan.sums.total):
        if abs(amount) > MAX_AMOUNT:
            raise ValidationError(f"an amount of this transaction exceeds {MAX_AMOUNT}", "deliveries")
    return plan


def _price_delivery(call: Call, customer: Customer, d: DeliveryInput) -> DeliveryPlan:
    session = call.session
    item = lookups.equipment(session, d.equipment)
    if d.kind == "full_deliver":
        line = pricing.delivery_line(item.code, item.name, d.qty, lookups.equipment_price(session, customer.id, item))
    elif d.kind == "empty_return":
        line = pricing.empty_return_line(item.code, item.name, d.qty)
    else:
        assert d.remaining_kg is not None, "validated by the schema"
        if d.remaining_kg > item.capacity_kg * d.qty:
            raise ValidationError(
                f"{d.remaining_kg} kg cannot remain in {d.qty} x {item.code} ({item.capacity_kg} kg each)",
                "remaining_kg",
                {"equipment": item.code, "qty": d.qty, "capacity_kg": decimal_str(item.capacity_kg)},
            )
        rate = pricing.kg_rate_for(
            customer.kg_rate, lookups.equipment_price(session, customer.id, item), item.capacity_kg
        )
        line = pricing.half_return_line(item.code, item.name, d.qty, d.remaining_kg, rate)
    return DeliveryPlan(item, d.kind, d.qty, d.remaining_kg, line)


def customer_meter(call: Call, customer_id: int, *, lock: bool) -> Meter | None:
    """The customer's (first active) meter, or None when the customer has none yet; a customer whose
    meters are all inactive cannot take a reading (`invalid_state`). With `lock`, the customer row and its
    meter rows are locked (`SELECT ... FOR UPDATE`) until the commit, which also serialises the implicit
    creation of a first meter. Once locked, this transaction's objects are the truth until the commit, so a
    batch with many sales to one customer locks and reads its meters once."""
    session = call.session
    locked = unit_state(session).meters
    meters: Sequence[Meter]
    if customer_id in locked:
        meters = locked[customer_id]
    else:
        stmt = select(Meter).where(Meter.customer_id == customer_id).order_by(Meter.id)
        if lock:
            if any(isinstance(obj, (Customer, Meter)) for obj in session.dirty):
                session.flush()  # populate_existing must not overwrite this unit's unflushed changes
            session.execute(
                select(Customer)
                .where(Customer.id == customer_id)
                .with_for_update()
                .execution_options(populate_existing=True)
            ).scalar_one_or_none()
            stmt = stmt.with_for_update().execution_options(populate_existing=True)
        meters = session.scalars(stmt).all()
        if lock:
            locked[customer_id] = list(meters)
    for meter in meters:
        if meter.active:
            return meter
    if meters:
        raise InvalidState(f"customer {customer_id}'s meter is inactive", {"entity": "meter", "id": meters[0].id})
    return None


def remember_meter(call: Call, customer_id: int, meter: Meter) -> None:
    """A meter created in this transaction (its customer's row is locked) counts for the next sale."""
    unit_state(call.session).meters.setdefault(customer_id, []).append(meter)


def billing_baseline(meter: Meter | None) -> Decimal | None:
    """What a sale's usage counts from: the meter's last billed reading (None: this reading is the baseline)."""
    if meter is None:
        return None
    return meter.last_billed_reading if meter.last_billed_reading is not None else meter.last_reading


def check_regression(customer_id: int, meter: Meter | None, reading: Decimal) -> None:
    """A reading lower than the meter's latest recorded one is refused, whatever the devices' clocks say."""
    last = meter.last_reading if meter is not None else None
    if last is not None and reading < last:
        raise MeterRegression(
            f"meter reading {decimal_str(reading)} is lower than the last recorded {decimal_str(last)}",
            {"last": decimal_str(last), "current": decimal_str(reading), "customer": customer_id,
             "meter": meter.id if meter is not None else None},
        )  # fmt: skip


def check_stock(call: Call, plan: Plan) -> None:
    """Refuse a truck that would go below zero (`insufficient_stock`), warn about a site that would
    (`negative_site_inventory`), and leave every row the sale touches locked (ONE sorted call).

    The truck is judged on the locked rows. Where a row must be created first (a site's first cylinders of
    a model), it is judged before that too, on the committed rows without locks, so that a sale refused for
    stock never creates the zero rows; with every row already there (the usual case) that read is not
    needed: nothing is written before the authoritative check."""
    deltas = plan.deltas()
    codes = {d.equipment.id: d.equipment.code for d in plan.deliveries}
    truck_keys = [k for k in deltas if k.place == "truck"]

    def before_create() -> None:
        if not truck_keys:
            return
        locked = locked_stock(call.session)  # rows this transaction holds are current: no need to read them
        on_truck = {k.equipment: locked[k].full for k in truck_keys if k in locked}  # type: ignore[union-attr]
        unseen = [k.equipment for k in truck_keys if k not in locked]
        if unseen:
            seen = call.session.scalars(
                select(TruckStock).where(TruckStock.truck_id == plan.truck.id, TruckStock.equipment_id.in_(unseen))
            ).all()
            on_truck.update({row.equipment_id: row.full for row in seen})
        for key in sorted(truck_keys, key=StockKey.sort_key):
            _refuse_short_truck(key, on_truck.get(key.equipment, 0), deltas[key], codes)

    rows = lock_stock_rows(call.session, list(deltas), before_create) if deltas else {}
    warnings = []
    for key in sorted(deltas, key=StockKey.sort_key):
        delta, row = deltas[key], rows[key]
        if isinstance(row, TruckStock):
            _refuse_short_truck(key, row.full, delta, codes)
        elif isinstance(row, SiteStock):
            after = row.on_site + delta.get("on_site", 0)
            if after < 0:
                warnings.append(
                    warning(
                        "negative_site_inventory",
                        f"customer {key.holder} would hold {after} {codes[key.equipment]} on site",
                        customer=key.holder,
                        equipment=codes[key.equipment],
                        on_site=row.on_site,
                        after=after,
                    )
                )
    plan.stock = rows
    plan.warnings = warnings


def _refuse_short_truck(key: StockKey, available: int, delta: dict[str, int], codes: dict[int, str]) -> None:
    requested = -delta.get("full", 0)
    if requested > available:
        code = codes[key.equipment]
        raise InsufficientStock(
            f"truck {key.holder} has {available} full {code}, {requested} requested",
            {"place": "truck", "truck": key.holder, "equipment": code, "available": available, "requested": requested},
        )


def not_found(entity: str, record_id: int) -> NotFound:
    return NotFound(f"{entity} {record_id} not found", {"entity": entity, "id": record_id})
