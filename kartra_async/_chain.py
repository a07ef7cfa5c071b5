"""The fluent builders: `LeadChain` (many actions on one lead, one request) and the
account-scoped calls (`kartra.account`, `kartra.transactions`, `kartra.subscriptions`).

Every method checks its input against the command table and returns a NEW chain:
a chain is an immutable, reusable template, and nothing is sent until it is awaited.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Protocol, TypeVar, cast

import attrs

from ._commands import COMMANDS, Call, Command
from ._retry import RetryPolicy
from .errors import KartraValidationError
from .limits import Priority
from .models.account import CustomField
from .models.payments import CancelResult, RefundResult, SubscriptionDetails, Transaction
from .models.results import ChainResult

__all__ = ["AccountCalls", "LeadChain", "SubscriptionCalls", "TransactionCalls"]

T = TypeVar("T")
_NO_DATA: type[None] = type(None)  #: the result type of a cmd answering a message only


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
        """Create the lead (create_lead) with the fields named as in Kartra's docs
        (first_name, phone, ..., custom_fields={identifier: value}); its new id comes
        back in `result.lead_id`.

        Must be the first action, and the chain must name the lead by email. A text
        field takes a string, a drop_down or radio_button its option id, a checkbox a
        list of option ids; "" or [] clears a field. Kartra ignores an identifier it
        does not know. An existing email fails the call (LeadExistsError, 244)."""
        if "id" in self._identity or "email" not in self._identity:
            rule = "a new lead is named by its email only: use kartra.lead(email).create(...)"
            raise KartraValidationError("email", rule, cmd="create_lead")
        return self._add("create_lead", fields)

    def edit(self, **fields: Any) -> LeadChain:
        """Change the lead's fields (edit_lead), named as for `create`; `new_email=...`
        changes its email. Fields go on the wire in the order given.

        Must be the first action. A `new_email` another lead has fails the call
        (LeadExistsError, 244); so does a lead that is missing (243) or deleted (245)."""
        return self._add("edit_lead", fields)

    def search(self) -> LeadChain:
        """Look the lead up (search_lead): its id comes back in `result.lead_id`, and a
        missing lead fails the call (LeadNotFoundError). Must be the first action."""
        return self._add("search_lead", {})

    def assign_tag(self, tag: str) -> LeadChain:
        """Tag the lead (assign_tag). The tag must already exist in the account
        (TagNotFoundError, 212, in the result otherwise); a lead that has it keeps it."""
        return self._add("assign_tag", {"tag_name": tag})

    def unassign_tag(self, tag: str) -> LeadChain:
        """Remove a tag from the lead (unassign_tag). The tag must exist in the account
        (TagNotFoundError, 214); a lead without it is left alone."""
        return self._add("unassign_tag", {"tag_name": tag})

    def subscribe_list(self, list_name: str) -> LeadChain:
        """Subscribe the lead to a mailing list (subscribe_lead_to_list). The list must
        already exist in the account (ListNotFoundError, 231, in the result otherwise)."""
        return self._add("subscribe_lead_to_list", {"list_name": list_name})

    def unsubscribe_list(self, list_name: str) -> LeadChain:
        """Unsubscribe the lead from a mailing list (unsubscribe_lead_from_list). The
        list must exist (ListNotFoundError, 209); a lead not on it is left alone."""
        return self._add("unsubscribe_lead_from_list", {"list_name": list_name})

    def give_points(self, points: int, expiration_days: int | None = None) -> LeadChain:
        """Add `points` (an integer) to the lead's score (give_points_to_lead). After
        `expiration_days` days Kartra deducts these points again; 0 or None: never.
        Points add up, so a chain holding this is never sent twice."""
        values = {"points": points, "expiration_days": expiration_days}
        return self._add("give_points_to_lead", values)

    def remove_points(self, points: int) -> LeadChain:
        """Deduct `points` (an integer) from the lead's score (remove_points_from_lead).
        Never sent twice, as a repeat would deduct them again."""
        return self._add("remove_points_from_lead", {"points": points})

    def subscribe_sequence(self, sequence: str, step: str | int) -> LeadChain:
        """Put the lead in a sequence at one step (subscribe_lead_to_sequence_at_step).
        `step` is the step's box number (letters and digits only). The sequence and the
        step must exist in the account (SequenceNotFoundError 219, StepNotFoundError 230)."""
        values = {"sequence_name": sequence, "step": step}
        return self._add("subscribe_lead_to_sequence_at_step", values)

    def unsubscribe_sequence(self, sequence: str) -> LeadChain:
        """Take the lead out of a sequence (unsubscribe_lead_from_sequence). The
        sequence must exist (SequenceNotFoundError, 220); a lead not in it is left alone."""
        return self._add("unsubscribe_lead_from_sequence", {"sequence_name": sequence})

    def subscribe_calendar(
        self, calendar: str, class_name: str, starting: datetime | date | None = None
    ) -> LeadChain:
        """Book the lead into a class of a calendar (calendar_subscribe). Both must exist
        (CalendarNotFoundError 257, ClassNotFoundError 258). `starting` becomes
        starting_date 'DD Mmm YYYY' and, for a datetime, starting_hour 'HH:MM' in US
        Eastern time (a naive datetime is taken as Eastern); it must not be in the past.
        Each send books a session, so a chain holding this is never sent twice."""
        values = {"calendar_name": calendar, "class_name": class_name, "starting": starting}
        return self._add("calendar_subscribe", values)

    def cancel_calendar(self, calendar: str, class_name: str) -> LeadChain:
        """Cancel the lead's booking in a class of a calendar (calendar_cancel). No
        active or pending booking gives CalendarSubscriptionNotFoundError (259)."""
        return self._add("calendar_cancel", {"calendar_name": calendar, "class_name": class_name})

    def transactions(self) -> LeadChain:
        """Read the lead's payment transactions (retrieve_transactions_from_lead): the
        action's `data` is a list of TransactionSummary."""
        return self._add("retrieve_transactions_from_lead", {})

    def subscriptions(self) -> LeadChain:
        """Read the lead's recurring payment subscriptions
        (retrieve_subscriptions_from_lead): the action's `data` is a list of
        SubscriptionSummary."""
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


async def send_single(client: Sender, call: Call, result: type[T]) -> T:
    """Send a call of one action, raise its error if it failed, return its data as the
    `result` type its command's row names (the reader structured it into that type)."""
    action = (await client.send(call)).actions[0]
    if action.error is not None:
        raise action.error
    return cast(T, action.data)


async def send_one(client: Sender, cmd: str, values: Mapping[str, Any], result: type[T]) -> T:
    """Send one account-scoped action; see `send_single`."""
    command = COMMANDS[cmd]
    wire = command.build(values)
    return await send_single(client, Call({"actions": [{"cmd": cmd, **wire}]}, (command,)), result)


class _Calls:
    def __init__(self, client: Sender) -> None:
        self._client = client

    def __repr__(self) -> str:
        return f"<{type(self).__name__}>"


class AccountCalls(_Calls):
    """`kartra.account`: what the account holds. Each method is one call on its own."""

    async def _names(self, cmd: str) -> list[str]:
        return list(await send_one(self._client, cmd, {}, list[str]) or [])

    async def tags(self) -> list[str]:
        """Every tag name of the account (retrieve_account_tags)."""
        return await self._names("retrieve_account_tags")

    async def lists(self) -> list[str]:
        """Every mailing list name of the account (retrieve_account_lists)."""
        return await self._names("retrieve_account_lists")

    async def sequences(self) -> list[str]:
        """Every sequence name of the account (retrieve_account_sequences)."""
        return await self._names("retrieve_account_sequences")

    async def pages(self) -> list[str]:
        """Every page name of the account (retrieve_account_pages)."""
        return await self._names("retrieve_account_pages")

    async def custom_fields(self) -> list[CustomField]:
        """Every custom field of the account, with the options (ids and names) of the
        drop_down, radio_button and checkbox fields (retrieve_custom_fields)."""
        fields = await send_one(self._client, "retrieve_custom_fields", {}, list[CustomField])
        return list(fields or [])

    async def create_custom_field(
        self, identifier: str, type: str, options: list[str] | None = None
    ) -> None:
        """Create a custom field (create_custom_field). `identifier`: letters, numbers,
        dashes and underscores only. `type`: input_field, text_area, drop_down,
        radio_button or checkbox; the last three need two or more `options` (names), the
        others take none. An identifier in use raises CustomFieldExistsError (264).
        Never sent twice: a repeat would answer 264 and hide that the first one worked."""
        values = {"identifier": identifier, "type": type, "options": options}
        await send_one(self._client, "create_custom_field", values, _NO_DATA)


class TransactionCalls(_Calls):
    """`kartra.transactions`: payment transactions by id. Each method is one call."""

    async def search(self, transaction_id: int) -> bool:
        """True if the transaction exists (search_transaction); TransactionNotFoundError
        (247) otherwise."""
        values = {"transaction_id": transaction_id}
        await send_one(self._client, "search_transaction", values, _NO_DATA)
        return True

    async def get(self, transaction_id: int) -> Transaction:
        """Everything about one transaction (get_transaction_details), as the Transaction
        subclass of its type: SaleTransaction, RefundTransaction (refunds, partial
        refunds and chargebacks), RebillTransaction, FailedTransaction or
        CancellationTransaction (plain Transaction for a type Kartra adds later)."""
        values = {"transaction_id": transaction_id}
        return await send_one(self._client, "get_transaction_details", values, Transaction)

    async def refund(
        self, transaction_id: int, amount: Decimal | str | None = None
    ) -> RefundResult:
        """Refund a sale or rebill within its refund period (refund_transaction): the whole
        amount, or `amount` (more than 0, two decimals at most) in the transaction's
        currency. Refused with PaymentStateError for a transaction past its refund period
        (250), already refunded (251), or not a sale/rebill or a test (253). Moves money:
        never sent twice."""
        values = {"transaction_id": transaction_id, "amount": amount}
        return await send_one(self._client, "refund_transaction", values, RefundResult)

    async def cancel(
        self, transaction_id: int | None = None, subscription_id: int | None = None
    ) -> CancelResult:
        """Stop the recurring subscription a transaction belongs to (cancel_transaction),
        named by exactly one of `transaction_id` and `subscription_id` (Kartra's internal
        subscription id). PaymentStateError if the transaction has no subscription (249),
        it is already cancelled (252) or cannot be cancelled (253). Never sent twice."""
        values = {"transaction_id": transaction_id, "subscription_id": subscription_id}
        return await send_one(self._client, "cancel_transaction", values, CancelResult)


class SubscriptionCalls(_Calls):
    """`kartra.subscriptions`: recurring payment subscriptions by Kartra's internal id.
    PayPal subscriptions can only be cancelled, and cancelled or terminated ones cannot
    be changed at all (PaymentStateError 284 and 275)."""

    async def search(self, subscription_id: int) -> bool:
        """True if the subscription exists (search_subscription);
        SubscriptionNotFoundError (248) otherwise."""
        values = {"subscription_id": subscription_id}
        await send_one(self._client, "search_subscription", values, _NO_DATA)
        return True

    async def get(self, subscription_id: int) -> SubscriptionDetails:
        """Everything about one subscription (get_subscription_details): status,
        installments, next payment, amounts."""
        values = {"subscription_id": subscription_id}
        return await send_one(self._client, "get_subscription_details", values, SubscriptionDetails)

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
    ) -> None:
        """Change a subscription's settings (edit_subscription): at least one of them.
        product_id and price_point go together; amount 1.00-9,999.99; quantity 1-9,999;
        installments_left a positive number or "until cancelled"; tax_percent 0-100;
        next_payment_date 'YYYY-MM-DD HH:MM' US Eastern (or a datetime), not in the past;
        recurrence {"recurring_period_1": ..., "recurring_period_2": ...} with the periods
        Kartra lists for the price point's type. Changes billing: never sent twice."""
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
        await send_one(self._client, "edit_subscription", values, _NO_DATA)

    async def _status(self, subscription_id: int, status: str) -> None:
        values = {"subscription_id": subscription_id, "status": status}
        await send_one(self._client, "modify_subscription_status", values, _NO_DATA)

    async def pause(self, subscription_id: int) -> None:
        """Pause an active subscription (modify_subscription_status pause): it stays
        active, but no payment is taken until `unpause`."""
        await self._status(subscription_id, "pause")

    async def unpause(self, subscription_id: int) -> None:
        """Make a paused subscription active again (modify_subscription_status unpause)."""
        await self._status(subscription_id, "unpause")

    async def cancel(self, subscription_id: int) -> None:
        """Cancel a subscription for good (modify_subscription_status cancel); one that is
        already cancelled raises PaymentStateError (252)."""
        await self._status(subscription_id, "cancel")
