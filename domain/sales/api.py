"""HTTP handlers of the sales context: parse, authorize (domain.accounts.policy), call one service, encode."""

from __future__ import annotations

from domain.api import Router

router = Router("sales")
