"""The fluent builders: `LeadChain` (many actions on one lead, one request) and the
account-scoped calls (`kartra.account`, `kartra.transactions`, `kartra.subscriptions`).

Every method checks its input against the command table and returns a NEW chain:
a chain is an immutable, reusable template, and nothing is sent until it is awaited.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Protocol

import attrs

from ._commands import COMMANDS, Call, Command
from ._retry import RetryPolicy
from .errors import KartraValidationError
from .limits import Priority
from .models.results import ChainResult

__all__ = ["AccountCalls", "LeadChain", "SubscriptionCalls", "TransactionCalls"]


class Sender(Protocol):
    """What a chain needs from the client."""

    async def send(
        self, call: Call, *, priority: Priority = "interactive", retry: RetryPolicy | None = None
    ) -> ChainResult: ...


def lead_identity(email: str | None, id: int | None) -> dict[str, Any]:
    """Check and order a lead's identity (id first, as Kartra looks it up by id first)."""
    if email is None and id is None:
        raise KartraValidationError("email", "a lead needs an email or an id")
    try:
        return COMMANDS["search_lead"].build({"id": id, "email": email})
    except KartraValidationError as exc:
        raise KartraValidationError(exc.field, exc.rule) from None


@attrs.frozen
class LeadChain:
    """Actions on one lead, compiled to ONE request with one `actions` array.

    Build it with `kartra.lead(email)` or `kartra.lead(id=...)`; `await chain` sends it.
    """

    _client: Sender = attrs.field(repr=False, eq=False)
    _identity: Mapping[str, Any]
    _lead: Mapping[str, Any] = attrs.field(factory=dict)  #: fields from create/edit
    _actions: tuple[tuple[Command, Mapping[str, Any]], ...] = ()

    # ---- building

    def _add(self, cmd: str, values: Mapping[str, Any]) -> LeadChain:
        command = COMMANDS[cmd]
        if command.starts_chain:
            if self._actions:
                first = self._actions[0][0].name
                rule = (
                    f"{cmd} must be the first action and a chain takes only one of "
                    f"create/edit/search (this chain starts with {first})"
                )
                raise KartraValidationError("actions", rule, cmd=cmd)
            wire = command.build({**self._identity, **values})
            return LeadChain(self._client, self._identity, wire, ((command, {}),))
        wire = command.build(values)
        return LeadChain(
            self._client, self._identity, self._lead, (*self._actions, (command, wire))
        )

    def create(self, **fields: Any) -> LeadChain:
        """create_lead with the lead fields named as in the docs (first_name, phone, ...,
        custom_fields={identifier: value}). Must come first; needs the lead's email."""
        if "id" in self._identity or "email" not in self._identity:
            rule = "a new lead is named by its email only: use kartra.lead(email).create(...)"
            raise KartraValidationError("email", rule, cmd="create_lead")
        return self._add("create_lead", fields)

    def edit(self, **fields: Any) -> LeadChain:
        """edit_lead: set the given lead fields; `new_email=...` changes the email.
        Must come first. Fields go on the wire in the order given."""
        return self._add("edit_lead", fields)

    def search(self) -> LeadChain:
        """search_lead: find the lead (its id comes back in `result.lead_id`). Must come first."""
        return self._add("search_lead", {})

    def assign_tag(self, tag: str) -> LeadChain:
        """assign_tag: the tag must exist in the account."""
        return self._add("assign_tag", {"tag_name": tag})

    def unassign_tag(self, tag: str) -> LeadChain:
        """unassign_tag."""
        return self._add("unassign_tag", {"tag_name": tag})

    def subscribe_list(self, list_name: str) -> LeadChain:
        """subscribe_lead_to_list: the list must exist in the account."""
        return self._add("subscribe_lead_to_list", {"list_name": list_name})

    def unsubscribe_list(self, list_name: str) -> LeadChain:
        """unsubscribe_lead_from_list."""
        return self._add("unsubscribe_lead_from_list", {"list_name": list_name})

    def give_points(self, points: int, expiration_days: int | None = None) -> LeadChain:
        """give_points_to_lead; the points are taken back after `expiration_days` (0/None: never)."""
        values = {"points": points, "expiration_days": expiration_days}
        return self._add("give_points_to_lead", values)

    def remove_points(self, points: int) -> LeadChain:
        """remove_points_from_lead."""
        return self._add("remove_points_from_lead", {"points": points})

    def subscribe_sequence(self, sequence: str, step: str | int) -> LeadChain:
        """subscribe_lead_to_sequence_at_step: `step` is the step's box number (alphanumeric)."""
        values = {"sequence_name": sequence, "step": step}
        return self._add("subscribe_lead_to_sequence_at_step", values)

    def unsubscribe_sequence(self, sequence: str) -> LeadChain:
        """unsubscribe_lead_from_sequence."""
        return self._add("unsubscribe_lead_from_sequence", {"sequence_name": sequence})

    def subscribe_calendar(
        self, calendar: str, class_name: str, starting: datetime | date | None = None
    ) -> LeadChain:
        """calendar_subscribe. `starting` becomes starting_date 'DD Mmm YYYY' and
        starting_hour 'HH:MM' in US Eastern time (a naive datetime is taken as Eastern);
        it must not be in the past."""
        values = {"calendar_name": calendar, "class_name": class_name, "starting": starting}
        return self._add("calendar_subscribe", values)

    def cancel_calendar(self, calendar: str, class_name: str) -> LeadChain:
        """calendar_cancel."""
        return self._add("calendar_cancel", {"calendar_name": calendar, "class_name": class_name})

    def transactions(self) -> LeadChain:
        """retrieve_transactions_from_lead."""
        return self._add("retrieve_transactions_from_lead", {})

    def subscriptions(self) -> LeadChain:
        """retrieve_subscriptions_from_lead."""
        return self._add("retrieve_subscriptions_from_lead", {})

    # ---- compiling and sending

    @property
    def payload(self) -> dict[str, Any]:
        """The nested form this chain compiles to (without credentials)."""
        lead = dict(self._lead) if self._lead else dict(self._identity)
        actions = [{"cmd": command.name, **wire} for command, wire in self._actions]
        return {"lead": lead, "actions": actions}

    @property
    def cmds(self) -> tuple[str, ...]:
        """The chain's cmds in order."""
        return tuple(command.name for command, _ in self._actions)

    def compile(self) -> Call:
        """The request this chain sends; raises KartraValidationError for an empty chain."""
        if not self._actions:
            raise KartraValidationError("actions", "a chain needs at least one action")
        commands = tuple(command for command, _ in self._actions)
        lead_id = self._identity.get("id")
        return Call(self.payload, commands, lead_id)

    async def send(
        self, *, priority: Priority = "interactive", retry: RetryPolicy | None = None
    ) -> ChainResult:
        """Send the chain as ONE request and return every action's result.
        `priority="bulk"` lets interactive calls of the same App go first; `retry`
        overrides the client's RetryPolicy for this call.

        Failed actions do not raise: check `result.ok` or call `result.raise_for_errors()`.
        A call-level error (authentication, lead not found, ...) raises its KartraAPIError.
        """
        return await self._client.send(self.compile(), priority=priority, retry=retry)

    def __await__(self) -> Generator[Any, None, ChainResult]:
        return self.send().__await__()


async def send_one(client: Sender, cmd: str, values: Mapping[str, Any]) -> Any:
    """Send one account-scoped action, raise its error if it failed, return its data."""
    command = COMMANDS[cmd]
    wire = command.build(values)
    result = await client.send(Call({"actions": [{"cmd": cmd, **wire}]}, (command,)))
    action = result.actions[0]
    if action.error is not None:
        raise action.error
    return action.data


class _Calls:
    def __init__(self, client: Sender) -> None:
        self._client = client

    def __repr__(self) -> str:
        return f"<{type(self).__name__}>"


class AccountCalls(_Calls):
    """`kartra.account`: what the account holds."""

    async def tags(self) -> list[str]:
        """retrieve_account_tags: every tag name."""
        return list(await send_one(self._client, "retrieve_account_tags", {}) or [])

    async def lists(self) -> list[str]:
        """retrieve_account_lists: every list name."""
        return list(await send_one(self._client, "retrieve_account_lists", {}) or [])

    async def sequences(self) -> list[str]:
        """retrieve_account_sequences: every sequence name."""
        return list(await send_one(self._client, "retrieve_account_sequences", {}) or [])

    async def pages(self) -> list[str]:
        """retrieve_account_pages: every page name."""
        return list(await send_one(self._client, "retrieve_account_pages", {}) or [])

    async def custom_fields(self) -> Any:
        """retrieve_custom_fields: every custom field with its options."""
        return await send_one(self._client, "retrieve_custom_fields", {})

    async def create_custom_field(
        self, identifier: str, type: str, options: list[str] | None = None
    ) -> Any:
        """create_custom_field. `type` is input_field, text_area, drop_down, radio_button or
        checkbox; the last three need two or more `options` (names)."""
        values = {"identifier": identifier, "type": type, "options": options}
        return await send_one(self._client, "create_custom_field", values)


class TransactionCalls(_Calls):
    """`kartra.transactions`: payment transactions by id."""

    async def search(self, transaction_id: int) -> bool:
        """search_transaction: True if it exists (TransactionNotFoundError otherwise)."""
        await send_one(self._client, "search_transaction", {"transaction_id": transaction_id})
        return True

    async def get(self, transaction_id: int) -> Any:
        """get_transaction_details."""
        values = {"transaction_id": transaction_id}
        return await send_one(self._client, "get_transaction_details", values)

    async def refund(self, transaction_id: int, amount: Decimal | str | None = None) -> Any:
        """refund_transaction: the whole amount, or `amount` (> 0, two decimals at most)."""
        values = {"transaction_id": transaction_id, "amount": amount}
        return await send_one(self._client, "refund_transaction", values)

    async def cancel(
        self, transaction_id: int | None = None, subscription_id: int | None = None
    ) -> Any:
        """cancel_transaction: stop the recurring subscription a transaction (or id) belongs to."""
        values = {"transaction_id": transaction_id, "subscription_id": subscription_id}
        return await send_one(self._client, "cancel_transaction", values)


class SubscriptionCalls(_Calls):
    """`kartra.subscriptions`: recurring payment subscriptions by id."""

    async def search(self, subscription_id: int) -> bool:
        """search_subscription: True if it exists (SubscriptionNotFoundError otherwise)."""
        await send_one(self._client, "search_subscription", {"subscription_id": subscription_id})
        return True

    async def get(self, subscription_id: int) -> Any:
        """get_subscription_details."""
        values = {"subscription_id": subscription_id}
        return await send_one(self._client, "get_subscription_details", values)

    async def edit(
        self,
        subscription_id: int,
        *,
        product_id: int | None = None,
        price_point: int | None = None,
        next_payment_date: datetime | str | None = None,
        amount: Decimal | str | None = None,
        recurrence: Mapping[str, str] | None = None,
        quantity: int | None = None,
        installments_left: int | str | None = None,
        tax_percent: Decimal | str | int | None = None,
    ) -> Any:
        """edit_subscription: change at least one setting. product_id and price_point go
        together; amount 1.00-9,999.99; quantity 1-9,999; installments_left a positive
        number or "until cancelled"; tax_percent 0-100; next_payment_date US Eastern,
        not in the past; recurrence {"recurring_period_1": ..., "recurring_period_2": ...}."""
        values = {
            "subscription_id": subscription_id,
            "product_id": product_id,
            "price_point": price_point,
            "next_payment_date": next_payment_date,
            "amount": amount,
            "recurrence": recurrence,
            "quantity": quantity,
            "installments_left": installments_left,
            "tax_percent": tax_percent,
        }
        return await send_one(self._client, "edit_subscription", values)

    async def _status(self, subscription_id: int, status: str) -> Any:
        values = {"subscription_id": subscription_id, "status": status}
        return await send_one(self._client, "modify_subscription_status", values)

    async def pause(self, subscription_id: int) -> Any:
        """modify_subscription_status pause."""
        return await self._status(subscription_id, "pause")

    async def unpause(self, subscription_id: int) -> Any:
        """modify_subscription_status unpause."""
        return await self._status(subscription_id, "unpause")

    async def cancel(self, subscription_id: int) -> Any:
        """modify_subscription_status cancel."""
        return await self._status(subscription_id, "cancel")
