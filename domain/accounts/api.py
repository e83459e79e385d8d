"""HTTP handlers of the accounts context: parse, authorize (domain.accounts.policy), call one service, encode."""

from __future__ import annotations

from domain.api import Router

router = Router("accounts")
