"""Demo data for a first run: loaded once into an empty database (skip with `--no-demo`)."""

from __future__ import annotations

from decimal import Decimal
from functools import lru_cache, partial
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from domain.accounts.models import User
from domain.accounts.passwords import hash_password
from domain.audit.services import audit
from domain.catalog.docs import customer_doc, depot_doc, equipment_doc, service_doc, truck_doc
from domain.catalog.models import Customer, Depot, EquipmentModel, Meter, Service, Truck
from domain.db import Database
from domain.feed.services import record_change
from domain.logistics.docs import stock_doc
from domain.logistics.models import DepotStock, TruckStock

DEMO_USERS = (
    ("admin", "admin", "Office Admin", "admin-lpg-2026"),
    ("driver1", "driver", "Tan Ah Kow", "driver1-lpg-2026"),
    ("driver2", "driver", "Muthu Rajan", "driver2-lpg-2026"),
)
# Singapore retail prices and deposits of LPG cylinders (SGD).
DEMO_EQUIPMENT = (
    ("CYL9", "CYL 9kg", "9.00", "24.50", "40.00"),
    ("CYL12.7", "CYL 12.7kg", "12.70", "32.90", "50.00"),
    ("CYL14", "CYL 14kg", "14.00", "35.90", "55.00"),
    ("CYL50", "CYL 50kg", "50.00", "118.00", "120.00"),
)
DEMO_SERVICES = (
    ("INSTALL", "Installation and safety check", "30.00"),
    ("DEPOSIT", "Cylinder deposit", "50.00"),
    ("DELIVERY", "Delivery fee", "5.00"),
)
DEMO_DEPOTS = (
    ("JRG", "Jurong Port Depot", "8 Jurong Port Road, Singapore 619116"),
    ("SNG", "Senoko Depot", "21 Senoko Drive, Singapore 758200"),
)
DEMO_TRUCKS = (("GBA1234X", "Lorry 1"), ("GBB5678Y", "Lorry 2"), ("GBC9012Z", "Lorry 3"))
DEMO_CUSTOMERS = (
    ("Ah Seng Eating House", "12 Jurong Port Rd, #01-05, Singapore 619094", "ahseng@example.sg", "3.2000"),
    ("Hock Lee Kopitiam", "45 Senoko Way, Singapore 758047", "hocklee@example.sg", "3.1000"),
    ("Restoran Nasi Padang Sedap", "7 Kampong Glam Rd, Singapore 199589", "sedap@example.sg", "3.2500"),
    ("Anbu Curry House", "63 Race Course Rd, Singapore 218568", "anbu@example.sg", "3.3000"),
    (
        "金龙海鲜楼 Golden Dragon Seafood",
        "1 Seafood Way, #02-11, Singapore 449876",
        "goldendragon@example.sg",
        "3.1500",
    ),
)


def load_demo(db: Database) -> bool:
    """Load the demo data unless the database already has users. Returns whether it loaded."""

    def work(uow: Any) -> bool:
        session: Session = uow.session
        if session.execute(select(func.count()).select_from(User)).scalar_one():
            return False
        _load(session)
        return True

    return db.run(work)


def _load(session: Session) -> None:
    for username, role, full_name, password in DEMO_USERS:
        user = User(username=username, role=role, full_name=full_name, password_hash=_demo_hash(password))
        session.add(user)
        audit(
            session,
            None,
            None,
            "create",
            "user",
            user,
            after={"username": username, "role": role},
            source="demo",
        )
    equipment = []
    for code, name, kg, price, deposit in DEMO_EQUIPMENT:
        e = EquipmentModel(
            code=code, name=name, capacity_kg=Decimal(kg), unit_price=Decimal(price), deposit=Decimal(deposit)
        )
        equipment.append(e)
        _created(session, "equipment", e, equipment_doc)
    for code, name, price in DEMO_SERVICES:
        _created(session, "service", Service(code=code, name=name, price=Decimal(price)), service_doc)
    depots = []
    for code, name, address in DEMO_DEPOTS:
        depot = Depot(code=code, name=name, address=address)
        depots.append(depot)
        _created(session, "depot", depot, depot_doc)
    trucks = []
    for plate, name in DEMO_TRUCKS:
        truck = Truck(plate=plate, name=name)
        trucks.append(truck)
        _created(session, "truck", truck, truck_doc)
    for index, (name, address, email, rate) in enumerate(DEMO_CUSTOMERS, start=1):
        customer = Customer(
            name=name, address=address, email=email, meter_rate=Decimal(rate), kg_rate=Decimal("2.6000")
        )
        session.add(customer)
        meter = Meter(serial=f"MTR-{index:04d}")
        session.flush()
        meter.customer_id = customer.id
        session.add(meter)
        _created(session, "customer", customer, partial(_customer_with_meter, meter=meter))
    session.flush()
    for depot in depots:
        for e in equipment:
            _stock(session, DepotStock(depot_id=depot.id, equipment_id=e.id, full=200, empty=40), e.code)
    for truck in trucks:
        for e in equipment:
            _stock(session, TruckStock(truck_id=truck.id, equipment_id=e.id, full=20, empty=0), e.code)


@lru_cache(maxsize=8)
def _demo_hash(password: str) -> str:
    """Argon2 is slow on purpose; the demo's three hashes are computed once per process."""
    return hash_password(password)


def _created(session: Session, entity: str, row: Any, doc: Any) -> None:
    session.add(row)
    record_change(session, entity, row, doc=lambda: doc(row))
    audit(session, None, None, "create", entity, row, after=lambda: doc(row), source="demo")


def _customer_with_meter(customer: Customer, meter: Meter) -> dict[str, Any]:
    return customer_doc(customer, [meter])


def _stock(session: Session, row: DepotStock | TruckStock, code: str) -> None:
    entity = "depot_stock" if isinstance(row, DepotStock) else "truck_stock"
    _created(session, entity, row, lambda r: stock_doc(r, code))
