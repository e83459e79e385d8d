"""Random sequences of logins, refreshes, replays of spent tokens and logouts: after every step each login
session (refresh-token family) is either alive with exactly one spendable refresh token and working access
tokens, or dead with none, and every answer is the one the rules give."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test
from sqlalchemy import func, select

from domain.accounts.models import RefreshToken, User
from domain.accounts.schemas import Logout, RefreshSession
from domain.accounts.sessions import _issue, logout, refresh
from domain.accounts.tokens import new_jti
from domain.api import load_user
from domain.clock import utcnow
from domain.db import Database
from domain.errors import InvalidToken, TokenReused
from domain.settings import Settings


@dataclass
class Family:
    jti: str
    latest: str
    spent: list[str] = field(default_factory=list)
    access: list[str] = field(default_factory=list)
    dead: bool = False


def test_refresh_families(demo: Database, settings: Settings) -> None:
    db, config = demo, settings

    class Sessions(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.families: list[Family] = []

        @rule()
        def log_in(self) -> None:
            def work(uow: object) -> tuple[str, str, str]:
                session = uow.session  # type: ignore[attr-defined]
                family = new_jti()
                issued, _ = _issue(session, config, session.get(User, 2), family, "tab-p", utcnow())
                return family, issued.refresh, issued.access

            family, token, access = db.run(work)
            self.families.append(Family(family, token, access=[access]))

        @precondition(lambda self: self.families)
        @rule(data=st.data())
        def refresh_latest(self, data: st.DataObject) -> None:
            fam = data.draw(st.sampled_from(self.families))
            if fam.dead:
                with pytest.raises(InvalidToken):
                    refresh(db, config, RefreshSession(refresh=fam.latest))
                return
            issued = refresh(db, config, RefreshSession(refresh=fam.latest))
            fam.spent.append(fam.latest)
            fam.latest = issued.refresh
            fam.access.append(issued.access)

        @precondition(lambda self: any(f.spent for f in self.families))
        @rule(data=st.data())
        def replay_a_spent_token(self, data: st.DataObject) -> None:
            fam = data.draw(st.sampled_from([f for f in self.families if f.spent]))
            with pytest.raises(TokenReused):
                refresh(db, config, RefreshSession(refresh=data.draw(st.sampled_from(fam.spent))))
            fam.dead = True

        @precondition(lambda self: self.families)
        @rule(data=st.data())
        def log_out(self, data: st.DataObject) -> None:
            fam = data.draw(st.sampled_from(self.families))
            logout(db, config, Logout(refresh=data.draw(st.sampled_from([fam.latest, *fam.spent]))))
            fam.dead = True

        @invariant()
        def each_family_is_alive_with_one_token_or_dead_with_none(self) -> None:
            def live(family: str) -> int:
                return db.read(
                    lambda s: s.execute(
                        select(func.count())
                        .select_from(RefreshToken)
                        .where(
                            RefreshToken.family == family,
                            RefreshToken.used_at.is_(None),
                            RefreshToken.revoked_at.is_(None),
                        )
                    ).scalar_one()
                )

            for fam in self.families:
                assert live(fam.jti) == (0 if fam.dead else 1)
                try:
                    db.read(lambda s, f=fam.jti: load_user(s, 2, f))  # type: ignore[misc]
                    works = True
                except InvalidToken:
                    works = False
                assert works == (not fam.dead)

    run_state_machine_as_test(
        Sessions,
        settings=hypothesis_settings(
            max_examples=20,
            stateful_step_count=12,
            deadline=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        ),
    )
