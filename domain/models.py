"""Every table of the domain, imported in one place so that metadata is complete."""

from domain.accounts.models import Device, LoginAttempt, RefreshToken, User
from domain.audit.models import AuditEntry
from domain.base import Base
from domain.catalog.models import Customer, CustomerPrice, Depot, EquipmentModel, Meter, Service, Truck
from domain.feed.models import Counter, FeedEntry
from domain.invoicing.models import Invoice, InvoiceEvent, InvoiceLine, Payment
from domain.logistics.models import (
    DepotStock,
    Distribution,
    DistributionItem,
    SiteStock,
    StockAdjustment,
    TruckStock,
)
from domain.sales.models import DeliveryLine, MeterReading, ServiceLine, Transaction

__all__ = [
    "AuditEntry",
    "Base",
    "Counter",
    "Customer",
    "CustomerPrice",
    "DeliveryLine",
    "Depot",
    "DepotStock",
    "Device",
    "Distribution",
    "DistributionItem",
    "EquipmentModel",
    "FeedEntry",
    "Invoice",
    "InvoiceEvent",
    "InvoiceLine",
    "LoginAttempt",
    "Meter",
    "MeterReading",
    "Payment",
    "RefreshToken",
    "Service",
    "ServiceLine",
    "SiteStock",
    "StockAdjustment",
    "Transaction",
    "Truck",
    "TruckStock",
    "User",
]
