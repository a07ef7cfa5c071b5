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
    Each method checks its arguments against the rules Kartra documents (raising
    KartraValidationError before anything is sent) and returns a new chain.

    A lead action that Kartra refuses (a tag, list or sequence that does not exist) is
    that action's failure: in a chain of two or more actions the others still run and
    the error is in `result.actions[i].error`; a chain of that one action raises it.
    An error about the lead itself (not found, deleted, already exists) fails the whole
    call and raises.
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
        """Create the lead (create_lead), named by the chain's email.

        Must be the first action (a chain holds one of create/edit/search), and the
        chain must name the lead by email, not id. Its new id comes back in
        `result.lead_id`. Never sent twice: a repeat would fail with 244 and lose the id.

        Args:
            **fields: Lead fields named as in Kartra's docs: first_name, middle_name,
                last_name, last_name2, phone, phone_country_code, ip, address, zip, city,
                state, country, company, lead_picture (a URL), website, facebook,
                twitter, linkedin, lead_preferred_time_zone (one of Kartra's 76 zones,
                e.g. "Europe/London"), and custom_fields={identifier: value}: a string
                for a text field, an option id for drop_down or radio_button, a list of
                option ids for checkbox, "" or [] to clear it. Kartra ignores an
                identifier the account does not have.

        Raises:
            KartraValidationError: An unknown field, a bad value, or the rules above.
            LeadExistsError: When sent: a lead with this email exists (244); nothing
                in the chain is applied.
        """
        if "id" in self._identity or "email" not in self._identity:
            rule = "a new lead is named by its email only: use kartra.lead(email).create(...)"
            raise KartraValidationError("email", rule, cmd="create_lead")
        return self._add("create_lead", fields)

    def edit(self, **fields: Any) -> LeadChain:
        """Change the lead's fields (edit_lead); fields go on the wire in the order given.

        Must be the first action. The lead is found by the chain's id or email.

        Args:
            **fields: The fields `create` takes, plus `new_email` to change the lead's
                email address.

        Raises:
            KartraValidationError: An unknown field or a bad value.
            LeadNotFoundError: When sent: no such lead (243).
            LeadDeletedError: When sent: the lead was deleted (245).
            LeadExistsError: When sent: another lead has `new_email` (244).
        """
        return self._add("edit_lead", fields)

    def search(self) -> LeadChain:
        """Look the lead up (search_lead) by the chain's id or email.

        Must be the first action. The lead's id comes back in `result.lead_id`; the
        actions after it run on that lead.

        Raises:
            LeadNotFoundError: When sent: no such lead (243).
            LeadDeletedError: When sent: the lead was deleted (245).
        """
        return self._add("search_lead", {})

    def assign_tag(self, tag: str) -> LeadChain:
        """Tag the lead (assign_tag).

        Args:
            tag: The tag's name, not empty. The tag must already exist in the account:
                Kartra does not create it.

        Raises:
            KartraValidationError: An empty name (Kartra's 211).

        A tag missing from the account fails the action with TagNotFoundError (212).
        """
        return self._add("assign_tag", {"tag_name": tag})

    def unassign_tag(self, tag: str) -> LeadChain:
        """Remove a tag from the lead (unassign_tag). A lead without the tag is left alone.

        Args:
            tag: The tag's name, not empty; it must exist in the account.

        Raises:
            KartraValidationError: An empty name (Kartra's 213).

        A tag missing from the account fails the action with TagNotFoundError (214).
        """
        return self._add("unassign_tag", {"tag_name": tag})

    def subscribe_list(self, list_name: str) -> LeadChain:
        """Subscribe the lead to a mailing list (subscribe_lead_to_list).

        Args:
            list_name: The list's name, not empty. The list must already exist in the
                account: Kartra does not create it.

        Raises:
            KartraValidationError: An empty name (Kartra's 207).

        A list missing from the account fails the action with ListNotFoundError (231).
        """
        return self._add("subscribe_lead_to_list", {"list_name": list_name})

    def unsubscribe_list(self, list_name: str) -> LeadChain:
        """Unsubscribe the lead from a mailing list (unsubscribe_lead_from_list). A lead
        not on the list is left alone.

        Args:
            list_name: The list's name, not empty; it must exist in the account.

        Raises:
            KartraValidationError: An empty name (Kartra's 208).

        A list missing from the account fails the action with ListNotFoundError (209).
        """
        return self._add("unsubscribe_lead_from_list", {"list_name": list_name})

    def give_points(self, points: int, expiration_days: int | None = None) -> LeadChain:
        """Add points to the lead's score (give_points_to_lead).

        Points add up, so a chain holding this is never sent twice.

        Args:
            points: An integer (Kartra's 215 and 227 refuse an empty or non-numeric one).
            expiration_days: After this many days Kartra deducts exactly these points
                again; 0 or None: they never expire.

        Raises:
            KartraValidationError: `points` or `expiration_days` is not an integer, or
                `expiration_days` is negative.
        """
        values = {"points": points, "expiration_days": expiration_days}
        return self._add("give_points_to_lead", values)

    def remove_points(self, points: int) -> LeadChain:
        """Deduct points from the lead's score (remove_points_from_lead).

        Never sent twice, as a repeat would deduct them again.

        Args:
            points: An integer (Kartra's 217 and 228 refuse an empty or non-numeric one).

        Raises:
            KartraValidationError: `points` is not an integer.
        """
        return self._add("remove_points_from_lead", {"points": points})

    def subscribe_sequence(self, sequence: str, step: str | int) -> LeadChain:
        """Put the lead in a sequence at one step (subscribe_lead_to_sequence_at_step).

        Args:
            sequence: The sequence's name, not empty; it must exist in the account.
            step: The step's box number: letters and digits only, not empty. The step
                must exist in the sequence.

        Raises:
            KartraValidationError: An empty name or step, or a step that is not
                alphanumeric (Kartra's 226, 225, 229).

        A sequence or step missing from the account fails the action with
        SequenceNotFoundError (219) or StepNotFoundError (230).
        """
        values = {"sequence_name": sequence, "step": step}
        return self._add("subscribe_lead_to_sequence_at_step", values)

    def unsubscribe_sequence(self, sequence: str) -> LeadChain:
        """Take the lead out of a sequence (unsubscribe_lead_from_sequence). A lead not
        in the sequence is left alone.

        Args:
            sequence: The sequence's name, not empty; it must exist in the account.

        Raises:
            KartraValidationError: An empty name (Kartra's 226).

        A sequence missing from the account fails the action with
        SequenceNotFoundError (220).
        """
        return self._add("unsubscribe_lead_from_sequence", {"sequence_name": sequence})

    def subscribe_calendar(
        self, calendar: str, class_name: str, starting: datetime | date | None = None
    ) -> LeadChain:
        """Book the lead into a class of a calendar (calendar_subscribe).

        Each send books a session, so a chain holding this is never sent twice.

        Args:
            calendar: The calendar's name, not empty. The calendar must exist and be
                completed in the account.
            class_name: The class's name, not empty; it must belong to the calendar.
            starting: When the booking starts, not in the past (US Eastern time). A
                date becomes starting_date 'DD Mmm YYYY'; a datetime also gives
                starting_hour 'HH:MM' (an aware one is converted to US Eastern, a naive
                one is taken as US Eastern). None: neither is sent.

        Raises:
            KartraValidationError: An empty name, or `starting` in the past or not a
                date (Kartra's 255, 256, 261, 260).

        A calendar or class that does not exist fails the action with
        CalendarNotFoundError (257) or ClassNotFoundError (258).
        """
        values = {"calendar_name": calendar, "class_name": class_name, "starting": starting}
        return self._add("calendar_subscribe", values)

    def cancel_calendar(self, calendar: str, class_name: str) -> LeadChain:
        """Cancel the lead's booking in a class of a calendar (calendar_cancel).

        Args:
            calendar: The calendar's name, not empty; it must exist in the account.
            class_name: The class's name, not empty; it must belong to the calendar.

        Raises:
            KartraValidationError: An empty name (Kartra's 255, 256).

        A calendar or class that does not exist fails the action with
        CalendarNotFoundError (257) or ClassNotFoundError (258); a lead with no active
        or pending booking in the class, with CalendarSubscriptionNotFoundError (259).
        """
        return self._add("calendar_cancel", {"calendar_name": calendar, "class_name": class_name})

    def transactions(self) -> LeadChain:
        """Read the lead's payment transactions (retrieve_transactions_from_lead).

        The action's `data` is a list of TransactionSummary (id, lead, type), empty if
        the lead has none.
        """
        return self._add("retrieve_transactions_from_lead", {})

    def subscriptions(self) -> LeadChain:
        """Read the lead's recurring payment subscriptions
        (retrieve_subscriptions_from_lead).

        The action's `data` is a list of SubscriptionSummary (id, lead, status: Active,
        Paused, Cancelled or Terminated), empty if the lead has none.
        """
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

    async def _exists(self, cmd: str, values: Mapping[str, Any]) -> bool:
        """A search_* call: it answers only "found" (or raises the not-found error)."""
        await send_one(self._client, cmd, values, _NO_DATA)
        return True


class AccountCalls(_Calls):
    """`kartra.account`: what the account holds. Each method is one call on its own and
    raises the error Kartra answers (KartraAPIError subclasses)."""

    async def _names(self, cmd: str) -> list[str]:
        return list(await send_one(self._client, cmd, {}, list[str]) or [])

    async def tags(self) -> list[str]:
        """The names of every tag in the account (retrieve_account_tags); [] if none.

        These are the names `assign_tag` and `unassign_tag` accept."""
        return await self._names("retrieve_account_tags")

    async def lists(self) -> list[str]:
        """The names of every mailing list in the account (retrieve_account_lists); [] if
        none. These are the names `subscribe_list` and `unsubscribe_list` accept."""
        return await self._names("retrieve_account_lists")

    async def sequences(self) -> list[str]:
        """The names of every sequence in the account (retrieve_account_sequences); [] if
        none. These are the names `subscribe_sequence` accepts."""
        return await self._names("retrieve_account_sequences")

    async def pages(self) -> list[str]:
        """The names of every page in the account (retrieve_account_pages); [] if none."""
        return await self._names("retrieve_account_pages")

    async def custom_fields(self) -> list[CustomField]:
        """Every custom field of the account (retrieve_custom_fields); [] if none.

        Each has its id, its identifier (the key `create(custom_fields=...)` takes),
        its type, and for drop_down, radio_button and checkbox fields the options (id
        and name) whose ids a lead's value is given in."""
        fields = await send_one(self._client, "retrieve_custom_fields", {}, list[CustomField])
        return list(fields or [])

    async def create_custom_field(
        self, identifier: str, type: str, options: list[str] | None = None
    ) -> None:
        """Create a custom field (create_custom_field).

        Never sent twice: a repeat would answer 264 and hide that the first one worked.

        Args:
            identifier: Letters, numbers, dashes and underscores only, not empty
                (Kartra's 263, 265).
            type: input_field, text_area, drop_down, radio_button or checkbox (269).
            options: The option names of a drop_down, radio_button or checkbox field:
                two or more, none empty (273, 272). The other types take none.

        Raises:
            KartraValidationError: Any of the rules above, before anything is sent.
            CustomFieldExistsError: The identifier exists already or is reserved (264).
        """
        values = {"identifier": identifier, "type": type, "options": options}
        await send_one(self._client, "create_custom_field", values, _NO_DATA)


class TransactionCalls(_Calls):
    """`kartra.transactions`: payment transactions by Kartra's transaction id. Each
    method is one call on its own and raises the error Kartra answers."""

    async def search(self, transaction_id: int) -> bool:
        """True if the transaction exists (search_transaction); TransactionNotFoundError
        (247) if it does not. `get` reads the transaction itself."""
        return await self._exists("search_transaction", {"transaction_id": transaction_id})

    async def get(self, transaction_id: int) -> Transaction:
        """Everything about one transaction (get_transaction_details).

        Returns:
            The Transaction subclass of its type: SaleTransaction, RefundTransaction
            (refunds, partial refunds and chargebacks), RebillTransaction,
            FailedTransaction or CancellationTransaction (plain Transaction for a type
            Kartra adds later).

        Raises:
            TransactionNotFoundError: No transaction with that id (247).
        """
        values = {"transaction_id": transaction_id}
        return await send_one(self._client, "get_transaction_details", values, Transaction)

    async def refund(
        self, transaction_id: int, amount: Decimal | str | None = None
    ) -> RefundResult:
        """Refund a sale or rebill within its refund period (refund_transaction).

        Moves money: never sent twice.

        Args:
            transaction_id: Kartra's transaction id.
            amount: The amount to refund (more than 0, two decimals at most), in the
                currency the transaction was paid in; None refunds all of it.

        Returns:
            The refunded transaction's id (`transaction_refunded`).

        Raises:
            KartraValidationError: A bad amount (Kartra's 268), before anything is sent.
            TransactionNotFoundError: No transaction with that id (247).
            PaymentStateError: The refund period is over (250), it is already refunded
                (251), it is not a sale or rebill or is a test (253), or the refund
                failed (266).
        """
        values = {"transaction_id": transaction_id, "amount": amount}
        return await send_one(self._client, "refund_transaction", values, RefundResult)

    async def cancel(
        self, transaction_id: int | None = None, subscription_id: int | None = None
    ) -> CancelResult:
        """Stop the recurring subscription a transaction belongs to (cancel_transaction).

        Never sent twice.

        Args:
            transaction_id: A transaction of the subscription.
            subscription_id: Kartra's internal subscription id, instead.

        Returns:
            The subscription's internal id, and PayPal's own id for a PayPal one.

        Raises:
            KartraValidationError: Not exactly one of the two ids.
            SubscriptionNotFoundError: No such subscription (248).
            PaymentStateError: The transaction has no subscription (249), it is already
                cancelled (252), the transaction is not a sale or rebill or is a test
                (253), or the cancellation failed (267).
        """
        values = {"transaction_id": transaction_id, "subscription_id": subscription_id}
        return await send_one(self._client, "cancel_transaction", values, CancelResult)


class SubscriptionCalls(_Calls):
    """`kartra.subscriptions`: recurring payment subscriptions by Kartra's internal id.

    Each method is one call on its own and raises the error Kartra answers. PayPal
    subscriptions can only be cancelled (PaymentStateError 284), and cancelled or
    terminated ones (every payment made) cannot be changed at all (275)."""

    async def search(self, subscription_id: int) -> bool:
        """True if the subscription exists (search_subscription);
        SubscriptionNotFoundError (248) if it does not. `get` reads its details."""
        return await self._exists("search_subscription", {"subscription_id": subscription_id})

    async def get(self, subscription_id: int) -> SubscriptionDetails:
        """Everything about one subscription (get_subscription_details): product and
        price point, status, installments (current and left, or "Until cancelled"),
        next payment date and amount, affiliate.

        Raises:
            SubscriptionNotFoundError: No subscription with that id (248).
        """
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

        Changes billing: never sent twice.

        Args:
            subscription_id: Kartra's internal subscription id.
            product_id: A new product; needs `price_point` with it.
            price_point: The product's price point; needs `product_id` with it.
            next_payment_date: 'YYYY-MM-DD HH:MM' US Eastern, or a datetime; not in the
                past.
            amount: 1.00 to 9,999.99, two decimals at most, in the subscription's
                currency.
            recurrence: {"recurring_period_1": ...} with monthly, every 2 months,
                quarterly, yearly, every 2 years, weekly or every 2 weeks; recurring
                installments also take "recurring_period_2" (yearly or every 2 years),
                with period 1 monthly, every 2 months, weekly or every 2 weeks.
            quantity: 1 to 9,999.
            installments_left: A positive number, or "until cancelled".
            tax_percent: 0 to 100.

        Raises:
            KartraValidationError: Nothing to change, or a value outside the rules above
                (Kartra's 285, 260, 261, 268, 276, 277, 278, 280, 290).
            SubscriptionNotFoundError: No subscription with that id (248).
            ProductNotFoundError: The product or price point does not exist (283).
            PaymentStateError: A PayPal (284), cancelled or terminated (275)
                subscription, a recurrence its price point type cannot take (281), or
                more installments than the recurrence allows (282).
        """
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
        """Pause an active subscription (modify_subscription_status "pause"): it stays
        active, but no payment is taken until `unpause`.

        Raises:
            SubscriptionNotFoundError: No subscription with that id (248).
            PaymentStateError: A PayPal (284), cancelled or terminated (275) subscription.
        """
        await self._status(subscription_id, "pause")

    async def unpause(self, subscription_id: int) -> None:
        """Make a paused subscription active again (modify_subscription_status "unpause").

        Raises:
            SubscriptionNotFoundError: No subscription with that id (248).
            PaymentStateError: A PayPal (284), cancelled or terminated (275) subscription.
        """
        await self._status(subscription_id, "unpause")

    async def cancel(self, subscription_id: int) -> None:
        """Cancel a subscription for good (modify_subscription_status "cancel"); PayPal
        subscriptions too.

        Raises:
            SubscriptionNotFoundError: No subscription with that id (248).
            PaymentStateError: Already cancelled (252), terminated (275), or the
                cancellation failed (267).
        """
        await self._status(subscription_id, "cancel")
