"""FakeKartra: a stateful, in-memory Kartra for tests, demos and benchmarks.

Modelled on fakeredis and moto: one fake holds Apps and accounts that several clients
share, every documented cmd changes its state as Kartra would, and switches inject
the faults a real network has (latency, 5xx, dropped connections, broken bodies, 429).

Answer shapes (`response_style`). Kartra's docs print some single-action answers flat
(`{"status", "message", "type"}` at the top level) and others inside `actions`; real
clients read both. The default, "mirrored", is inferred from five public clients run
against this fake (WP Fusion Lite, noobtask, communication-analyzer, strapi-populator,
a NestJS KartraService), not from the docs: a call about a lead answers the `actions`
array AND, when it has one action, that action's status, message and type (and what
the docs print at the top level for that cmd) at the top level too; account calls
answer as the docs print them. "documented" answers every call as the docs print it;
"wrapped" always answers the `actions` array. The SDK reads all three.

Option fields (drop_down, radio_button, checkbox) take an option's id or its label; a
value that names no option is ignored, as the docs say Kartra ignores an unknown field
identifier. Also inferred: the docs only show option ids.
"""

from __future__ import annotations

import random
import time
from collections import deque
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import attrs

from .._commands import COMMANDS
from .._constants import KARTRA_TZ
from ._handlers import (
    HANDLERS,
    LEAD_CMDS,
    LEAD_SCOPED,
    TOP_LEVEL,
    Context,
    KartraFault,
    MalformedRequest,
    find_lead,
)
from ._php import json_encode, parse_str, values
from ._state import (
    App,
    FakeAccount,
    FakeLead,
    Product,
    Subscription,
    Transaction,
)

if TYPE_CHECKING:
    import httpx

    from .._client import AsyncKartra
    from ..limits import Limiter
    from ._asgi import FakeApp

__all__ = ["FAULT_KINDS", "RESPONSE_STYLES", "FakeKartra", "Faults", "RecordedRequest", "Reply"]

#: The answer shapes a FakeKartra can give (see the module docstring); the first is the default.
RESPONSE_STYLES = ("mirrored", "documented", "wrapped")

#: fault kind -> whether the call is applied before the fault strikes
FAULT_KINDS: dict[str, bool] = {
    "refuse": False,  #: the connection is refused: Kartra never sees the call
    "http_5xx": False,  #: HTTP 500 (or `status=`) with an HTML body, nothing applied
    "drop_before": False,  #: connection dropped before Kartra saw the call
    "drop_after": True,  #: the call was applied, then the connection dropped
    "timeout": True,  #: the call was applied, the answer never comes
    "not_json": False,  #: HTTP 200 with an HTML page (a proxy's), nothing applied
    "truncated": True,  #: applied, but the JSON answer is cut short
}


@attrs.frozen
class Reply:
    """What the fake answers one call: HTTP status, body, and the fault to act out."""

    status: int
    body: bytes
    fault: str | None = None  #: drop_before, drop_after, timeout: the transport acts it out
    headers: tuple[tuple[str, str], ...] = (("content-type", "application/json"),)


@attrs.frozen
class RecordedRequest:
    """One call the fake received (for assertions in tests)."""

    form: dict[str, Any] = attrs.field(repr=False)
    cmds: tuple[str, ...]
    status: int
    body: bytes = attrs.field(repr=False)
    fault: str | None
    applied: bool
    at: float = 0.0  #: when it arrived (the fake's clock, seconds)

    @property
    def lead(self) -> dict[str, Any]:
        lead = self.form.get("lead")
        return lead if isinstance(lead, dict) else {}


@attrs.define
class _Rule:
    kind: str
    times: int | None  #: the next N calls, or None
    share: float  #: or this share of calls
    status: int = 500


class Faults:
    """Fault switches. `inject(kind, times=N)` hits the next N calls; `inject(kind,
    share=0.05)` hits 5% of calls (seeded, reproducible). Kinds: FAULT_KINDS.
    `latency = 0.2` or `latency = (0.3, 1.0)` delays every answer (seconds)."""

    def __init__(self, seed: int | None = None) -> None:
        self._random = random.Random(seed)
        self._rules: list[_Rule] = []
        self.latency: float | tuple[float, float] | None = None
        self.counts: dict[str, int] = {}

    def inject(
        self, kind: str, *, times: int | None = None, share: float | None = None, status: int = 500
    ) -> None:
        """Hit the next `times` calls, or a `share` of calls, with fault `kind`
        (FAULT_KINDS); `status` is http_5xx's HTTP status. ValueError for bad arguments."""
        self.check(kind, times=times, share=share, status=status)
        self._rules.append(_Rule(kind, times, share or 0.0, status))

    @staticmethod
    def check(
        kind: str, *, times: int | None = None, share: float | None = None, status: int = 500
    ) -> None:
        """Raise ValueError if `inject` would refuse these arguments."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {kind!r}; one of {', '.join(FAULT_KINDS)}")
        if (times is None) == (share is None):
            raise ValueError("give either times= or share=")
        if times is not None and times < 0:
            raise ValueError("times must be 0 or more")
        if share is not None and not 0 <= share <= 1:
            raise ValueError("share must be between 0 and 1")
        if not 100 <= status <= 599:
            raise ValueError("status must be an HTTP status (100-599)")

    def rules(self) -> list[dict[str, Any]]:
        """The rules still in force, in order (JSON-ready)."""
        out: list[dict[str, Any]] = []
        for rule in self._rules:
            if rule.times == 0:
                continue
            entry: dict[str, Any] = {"kind": rule.kind}
            if rule.times is not None:
                entry["times"] = rule.times
            else:
                entry["share"] = rule.share
            if rule.kind == "http_5xx":
                entry["status"] = rule.status
            out.append(entry)
        return out

    def clear(self) -> None:
        self._rules.clear()
        self.latency = None
        self.counts.clear()

    def delay(self) -> float:
        if self.latency is None:
            return 0.0
        if isinstance(self.latency, tuple):
            return self._random.uniform(*self.latency)
        return float(self.latency)

    def draw(self) -> _Rule | None:
        """The fault for the next call, if any (rules in the order injected)."""
        roll = self._random.random()
        for rule in self._rules:
            if rule.times is not None:
                if rule.times > 0:
                    rule.times -= 1
                    return self._count(rule)
                continue
            if roll < rule.share:
                return self._count(rule)
            roll -= rule.share
        return None

    def _count(self, rule: _Rule) -> _Rule:
        self.counts[rule.kind] = self.counts.get(rule.kind, 0) + 1
        return rule


class FakeKartra:
    """A stateful in-memory Kartra.

    Examples:
        >>> fake = FakeKartra()          # one App, one account, empty; fake.seed() for a demo
        >>> async with fake.client() as kartra:
        ...     await kartra.lead("a@b.co").create()

    `rate_limit` calls per `rate_period` seconds per App (None: off) answer HTTP 429
    beyond; `test_mode` rewrites new leads' emails to @kartra.com as Kartra's Test Mode
    does; `response_style` is one of RESPONSE_STYLES; `app_ids` are more App ids that
    share this App's accounts, and `any_app_id=True` accepts every App id; `arrival_delay`
    (seconds, or a (low, high) range) is the one-way trip before the fake counts a call;
    `clock` (monotonic seconds) and `now` (aware datetime) are injectable.
    """

    def __init__(
        self,
        app_id: str = "fake-app",
        api_key: str = "fake-key",
        api_password: str = "fake-password",
        *,
        rate_limit: int | None = 20,
        rate_period: float = 1.0,
        test_mode: bool = False,
        refund_period_days: int = 30,
        response_style: str = "mirrored",
        app_ids: Iterable[str] = (),
        any_app_id: bool = False,
        arrival_delay: float | tuple[float, float] = 0.0,
        seed: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] | None = None,
    ) -> None:
        if response_style not in RESPONSE_STYLES:
            raise ValueError(f"response_style is one of {', '.join(RESPONSE_STYLES)}")
        low, high = arrival_delay if isinstance(arrival_delay, tuple) else (arrival_delay,) * 2
        if not 0 <= low <= high:
            raise ValueError("arrival_delay is seconds >= 0, or a (low, high) range")
        self.app_id, self.api_key, self.api_password = app_id, api_key, api_password
        self.any_app_id = any_app_id
        self.rate_limit = rate_limit
        self.rate_period = rate_period
        self.test_mode = test_mode
        self.refund_period_days = refund_period_days
        self.response_style = response_style
        self.require_https = False
        self.faults = Faults(seed)
        self.requests: list[RecordedRequest] = []
        self.record = True
        self._clock = clock
        self._now = now or (lambda: datetime.now(KARTRA_TZ))
        self._windows: dict[str, deque[float]] = {}
        self._limiters: dict[str, Limiter] = {}
        self.arrival_delay = arrival_delay
        self._arrivals = random.Random(seed)
        self.apps: dict[str, App] = {}
        self.add_account(api_key, api_password, app_id=app_id)
        for other in app_ids:
            self.allow_app(other)

    # ---- configuration

    def add_app(self, app_id: str) -> App:
        """An App with accounts of its own (see allow_app for one sharing this App's)."""
        return self.apps.setdefault(app_id, App(app_id))

    def allow_app(self, app_id: str) -> App:
        """Accept `app_id` too, for the same accounts as the fake's own App (as one Kartra
        account serves every App it authorized). Each App id has its own rate limit."""
        app = self.apps.get(app_id)
        if app is None:
            app = self.apps[app_id] = App(app_id, accounts=self.app.accounts)
        return app

    @property
    def app_ids(self) -> tuple[str, ...]:
        """The App ids that reach this fake's own accounts."""
        return tuple(a.app_id for a in self.apps.values() if a.accounts is self.app.accounts)

    def add_account(
        self, api_key: str, api_password: str, *, app_id: str | None = None
    ) -> FakeAccount:
        """Another Kartra account (api_key/api_password pair) using the App."""
        app = self.add_app(app_id or self.app_id)
        account = FakeAccount(api_key, api_password)
        app.accounts[api_key] = account
        return account

    @property
    def app(self) -> App:
        return self.apps[self.app_id]

    @property
    def account(self) -> FakeAccount:
        """The default account (api_key given to the constructor)."""
        return self.app.accounts[self.api_key]

    def now(self) -> datetime:
        return self._now()

    def reset(self) -> None:
        """Forget every account's data, the request log, the faults and the rate windows
        (Apps, accounts and credentials stay)."""
        fresh: dict[int, FakeAccount] = {}
        for app in self.apps.values():
            for key, account in list(app.accounts.items()):
                if id(account) not in fresh:
                    fresh[id(account)] = FakeAccount(
                        account.api_key, account.api_password, active=account.active
                    )
                app.accounts[key] = fresh[id(account)]
        self.requests.clear()
        self.faults.clear()
        self._windows.clear()

    # ---- data helpers

    def add_lead(
        self, email: str, *, account: FakeAccount | None = None, **fields: str
    ) -> FakeLead:
        account = account or self.account
        lead = FakeLead(
            id=account.new_id(), email=email, date_joined=self.now(), fields=dict(fields)
        )
        account.leads[lead.id] = lead
        account.emails[email.lower()] = lead.id
        return lead

    def lead(self, email: str, *, account: FakeAccount | None = None) -> FakeLead | None:
        """The lead with that email, or None."""
        return (account or self.account).find_lead(email=email)

    def add_product(
        self,
        name: str,
        price_points: dict[int, Decimal] | None = None,
        *,
        account: FakeAccount | None = None,
    ) -> Product:
        account = account or self.account
        product = Product(account.new_id(), name, price_points or {1: Decimal("49.00")})
        account.products[product.id] = product
        return product

    def add_sale(
        self,
        lead: FakeLead,
        product: Product,
        *,
        price_point: int = 1,
        subscription: bool = False,
        kind: str = "recurring",
        processor: str = "Stripe",
        days_ago: int = 0,
        when: datetime | None = None,
        account: FakeAccount | None = None,
    ) -> Transaction:
        """Record a sale (and, with subscription=True, its recurring subscription), made
        `days_ago` days ago or `when`."""
        account = account or self.account
        when = when or self.now() - timedelta(days=days_ago)
        amount = product.price_points[price_point]
        sub_id = None
        if subscription:
            sub = Subscription(
                id=account.new_id(),
                external_id=f"I-{account.next_id:012d}"
                if processor == "PayPal"
                else str(account.next_id),
                lead_id=lead.id,
                lead_email=lead.email,
                product=product,
                price_point=price_point,
                start=when,
                next_payment=when + timedelta(days=30),
                amount=amount,
                kind=kind,
                processor=processor,
                installments_left=12 if kind != "recurring" else None,
            )
            account.subscriptions[sub.id] = sub
            sub_id = sub.id
        transaction = Transaction(
            id=account.new_id(), type="sale", lead_id=lead.id, lead_email=lead.email, product=product,
            price_point=price_point, amount=amount, date=when, subscription_id=sub_id, processor=processor,
        )  # fmt: skip
        account.transactions[transaction.id] = transaction
        return transaction

    def seed(self, account: FakeAccount | None = None) -> FakeAccount:
        """Fill an account with the demo (`demo_seed.json`): tags, lists, sequences, a
        calendar, memberships, custom fields, pages, products, leads with sales and
        subscriptions."""
        from ._seed import _Loader, demo_seed

        account = account or self.account
        _Loader(self, account, "").load(demo_seed())
        return account

    def load_seed(self, data: Any) -> None:
        """Add what a seed (parsed JSON; the form is in `kartra_async.testing._seed`)
        describes; SeedError, and nothing changed, if it cannot."""
        from ._seed import load

        load(self, data)

    def state(self) -> dict[str, Any]:
        """This fake's state in seed form (JSON-ready; no passwords): `load_seed` of it
        into a fresh fake rebuilds it."""
        from ._seed import dump

        return dump(self)

    # ---- wiring

    def transport(self) -> httpx.AsyncBaseTransport:
        """An httpx transport that answers from this fake (faults and latency included)."""
        from .transport import FakeTransport

        return FakeTransport(self)

    def asgi_app(self, **options: Any) -> FakeApp:
        """An ASGI app serving POST /api from this fake, with the control API under
        /_fake/ (options: FakeApp's, e.g. body_timeout)."""
        from ._asgi import FakeApp

        return FakeApp(self, **options)

    def shared_limiter(self, app_id: str) -> Limiter | None:
        """The rate limiter of one of this fake's Apps, as `limits.shared_limiter` is for
        Kartra: every client of the fake uses it (`client()`, and any AsyncKartra given
        `transport=fake.transport()`), so together they keep the fake's limit. None when
        the limit is off. Its clock is the fake's."""
        if self.rate_limit is None:
            return None
        from ..limits import Limiter

        limiter = self._limiters.get(app_id)
        wanted = (self.rate_limit, self.rate_period)
        if limiter is None or (limiter.limit, limiter.period) != wanted:
            limiter = self._limiters[app_id] = Limiter(
                *wanted, clock=self._clock, name=f"fake {app_id}"
            )
        return limiter

    def client(
        self, *, api_key: str | None = None, api_password: str | None = None, **kwargs: Any
    ) -> AsyncKartra:
        """An AsyncKartra wired to this fake (default credentials unless given). Its rate
        limiter is the fake App's (`shared_limiter`); pass `limiter=` to choose another."""
        from .._client import AsyncKartra

        return AsyncKartra(
            self.app_id,
            api_key or self.api_key,
            api_password or self.api_password,
            base_url="http://127.0.0.1/api",
            transport=self.transport(),
            **kwargs,
        )

    def draw_arrival_delay(self) -> float:
        """The one-way delay of the next call (seconds): `arrival_delay`, or a uniform
        draw from its (low, high) range."""
        delay = self.arrival_delay
        if isinstance(delay, tuple):
            return self._arrivals.uniform(*delay)
        return float(delay)

    # ---- answering

    def _rate_limited(self, app_id: str) -> bool:
        if self.rate_limit is None:
            return False
        now = self._clock()
        window = self._windows.setdefault(app_id, deque())
        while window and window[0] <= now - self.rate_period:
            window.popleft()
        if len(window) >= self.rate_limit:
            return True
        window.append(now)
        return False

    def handle(self, body: bytes, *, client_ip: str = "127.0.0.1", secure: bool = True) -> Reply:
        """Answer one raw form body as Kartra would; faults are drawn here."""
        form = parse_str(body.decode("utf-8", "replace"))
        app_id = form.get("app_id")
        app_key = app_id if isinstance(app_id, str) else ""
        rule = self.faults.draw()
        if rule is not None and not FAULT_KINDS[rule.kind]:
            reply = self._fault_before(rule)
            self._log(form, reply, applied=False)
            return reply
        if self._rate_limited(app_key):
            reply = Reply(429, b"Too many requests", headers=(("content-type", "text/plain"),))
            self._log(form, reply, applied=False)
            return reply
        try:
            answer = self._answer(form, client_ip=client_ip, secure=secure)
        except KartraFault as fault:
            answer = {"status": "Error", "message": fault.message, "type": str(fault.code)}
        except MalformedRequest as exc:
            reply = Reply(
                400, f"Bad Request: {exc}".encode(), headers=(("content-type", "text/plain"),)
            )
            self._log(form, reply, applied=False)
            return reply
        reply = Reply(200, json_encode(answer))
        if rule is not None:
            reply = self._fault_after(rule, reply)
        self._log(form, reply, applied=True)
        return reply

    def _fault_before(self, rule: _Rule) -> Reply:
        if rule.kind == "http_5xx":
            return Reply(
                rule.status,
                b"<html><body><h1>502 Bad Gateway</h1></body></html>",
                headers=(("content-type", "text/html"),),
            )
        if rule.kind == "not_json":
            return Reply(
                200,
                b"<!DOCTYPE html><html><body>Maintenance</body></html>",
                headers=(("content-type", "text/html"),),
            )
        return Reply(0, b"", fault=rule.kind)  # drop_before, refuse

    def _fault_after(self, rule: _Rule, reply: Reply) -> Reply:
        if rule.kind == "truncated":
            return attrs.evolve(reply, body=reply.body[: max(1, len(reply.body) // 2)])
        return attrs.evolve(reply, fault=rule.kind)  # drop_after, timeout

    def _log(self, form: dict[str, Any], reply: Reply, *, applied: bool) -> None:
        if not self.record:
            return
        actions = values(form.get("actions")) or []
        cmds = tuple(a.get("cmd", "") for a in actions if isinstance(a, dict))
        cmds = (*(name for name in TOP_LEVEL if name in form), *cmds)
        self.requests.append(
            RecordedRequest(
                form, cmds, reply.status, reply.body, reply.fault, applied, self._clock()
            )
        )

    def _authenticate(
        self, form: dict[str, Any], client_ip: str, secure: bool
    ) -> tuple[App, FakeAccount]:
        if self.require_https and not secure:
            raise KartraFault(201)
        app_id = form.get("app_id")
        if not isinstance(app_id, str) or not app_id:
            raise KartraFault(238)
        app = self.apps.get(app_id)
        if app is None and self.any_app_id:
            app = attrs.evolve(self.app, app_id=app_id)
        if app is None:
            raise KartraFault(239)
        if not app.active:
            raise KartraFault(240)
        key = form.get("api_key")
        if not isinstance(key, str) or not key:
            raise KartraFault(202)
        account = app.accounts.get(key)
        if account is None:
            raise KartraFault(203)
        if form.get("api_password") != account.api_password:
            raise KartraFault(233)
        if not account.active:
            raise KartraFault(204)
        if app.allowed_ips is not None and client_ip not in app.allowed_ips:
            raise KartraFault(242)
        return app, account

    def _answer(self, form: dict[str, Any], *, client_ip: str, secure: bool) -> dict[str, Any]:
        app, account = self._authenticate(form, client_ip, secure)
        ctx = Context(account, self.now(), self.test_mode, self.refund_period_days)
        for name, top_level in TOP_LEVEL.items():
            if name in form:
                query = form[name]
                if not isinstance(query, dict):
                    raise KartraFault(236)
                if name in app.forbidden_cmds:
                    raise KartraFault(262)
                return top_level(ctx, query)
        raw_actions = form.get("actions")
        entries = values(raw_actions)
        if entries is None:
            raise KartraFault(224)
        lead_form = form.get("lead", {})
        if not isinstance(lead_form, dict):
            raise KartraFault(223)
        cmds = []
        for entry in entries:
            cmd = entry.get("cmd") if isinstance(entry, dict) else None
            if not isinstance(cmd, str) or not cmd:
                raise KartraFault(254)
            if cmd in app.forbidden_cmds:
                raise KartraFault(262)
            cmds.append(cmd)
        if not cmds:
            raise KartraFault(254)

        results: list[dict[str, Any]] = []
        lead: FakeLead | None = None
        lead_status = None
        if cmds[0] in LEAD_CMDS:
            lead, first, lead_status = LEAD_CMDS[cmds[0]](ctx, lead_form)
            results.append(first)
        elif any(c in LEAD_SCOPED for c in cmds):
            lead = find_lead(ctx, lead_form)
            lead_status = "Found"
        for cmd, entry in zip(cmds[len(results) :], entries[len(results) :], strict=True):
            results.append(self._run(ctx, cmd, entry, lead))
        lead_scoped = cmds[0] in LEAD_CMDS or any(c in LEAD_SCOPED for c in cmds)
        return envelope(self.response_style, cmds, results, lead_status, lead_scoped=lead_scoped)

    def _run(
        self, ctx: Context, cmd: str, action: dict[str, Any], lead: FakeLead | None
    ) -> dict[str, Any]:
        if cmd in LEAD_CMDS:
            message = f"{cmd} must be the first action (key 0)"
            return {"status": "Error", "message": message, "type": "206"}
        handler = HANDLERS.get(cmd)
        if handler is None:
            return {"status": "Error", "message": f"Unknown cmd '{cmd}'", "type": "254"}
        try:
            return handler(ctx, action, lead)
        except KartraFault as fault:
            return {"status": "Error", "message": fault.message, "type": str(fault.code)}

    def leads(self, account: FakeAccount | None = None) -> Iterable[FakeLead]:
        return (account or self.account).leads.values()


def envelope(
    style: str,
    cmds: list[str],
    results: list[dict[str, Any]],
    lead_status: str | None = None,
    *,
    lead_scoped: bool = False,
) -> dict[str, Any]:
    """The answer to a call of `cmds` whose actions gave `results`, shaped in `style`
    (RESPONSE_STYLES). `lead_status` ("Created"/"Found") names the lead the call was about."""
    if style not in RESPONSE_STYLES:
        raise ValueError(f"style is one of {', '.join(RESPONSE_STYLES)}")
    wrapped: dict[str, Any] = {"status": "Success"}
    if lead_status is not None:
        wrapped["lead"] = {"Status": lead_status}
    wrapped["actions"] = [
        {cmd: {"status": "Success", **result}} for cmd, result in zip(cmds, results, strict=True)
    ]
    if style == "wrapped" or len(cmds) != 1:
        return wrapped
    cmd, result = cmds[0], results[0]
    # how the docs print it (the command table's single_form); an unknown cmd: flat
    form = COMMANDS[cmd].single_form if cmd in COMMANDS else "flat"
    failed = result.get("status") == "Error"
    if failed or form == "flat":
        documented = {"status": result.get("status", "Success"), **result}
    elif form == "unwrapped":
        documented = {cmd: result}
    else:
        documented = wrapped
    if style == "documented" or not lead_scoped:
        return documented
    mirrored = {"status": result.get("status", "Success")}
    mirrored.update((k, result[k]) for k in ("message", "type") if k in result)
    mirrored.update((k, v) for k, v in documented.items() if k not in mirrored)
    mirrored.update((k, v) for k, v in wrapped.items() if k != "status")
    return mirrored
