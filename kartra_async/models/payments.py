"""Payment transactions and recurring payment subscriptions."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any, Union

import attrs

from ._base import KartraStrEnum, UntilCancelled, raw_field
from .lead import TransactionType

__all__ = [
    "CancelResult",
    "CancellationTransaction",
    "FailedTransaction",
    "PaymentProcessor",
    "RebillTransaction",
    "RefundResult",
    "RefundTransaction",
    "SaleTransaction",
    "SubscriptionDetails",
    "SubscriptionStatus",
    "SubscriptionSummary",
    "Transaction",
    "TransactionDetails",
    "TransactionSummary",
]


class SubscriptionStatus(KartraStrEnum):
    ACTIVE = "Active"
    PAUSED = "Paused"
    CANCELLED = "Cancelled"
    TERMINATED = "Terminated"  #: every scheduled payment was paid


class PaymentProcessor(KartraStrEnum):
    PAYPAL = "PayPal"
    BRAINTREE = "Braintree"
    STRIPE = "Stripe"
    AUTHORIZE_NET = "Authorize.net"


@attrs.frozen(kw_only=True)
class Transaction:
    """The fields every transaction type shares (get_transaction_details).

    Money is Decimal; "N/A" becomes None; dates are US Eastern. A transaction type
    this SDK does not know yet is read as this base class.
    """

    transaction_id: int
    transaction_type: TransactionType
    transaction_date: datetime | None = None
    transaction_parent_id: int | None = None  #: the original sale, for refunds/chargebacks
    transaction_subscription_id: str | None = None  #: PayPal's id for PayPal subscriptions
    transaction_internal_subscription_id: int | None = None
    original_id: int | None = None
    lead_id: int | None = None
    lead_first_name: str | None = None
    lead_last_name: str | None = None
    lead_email: str | None = None
    lead_username: str | None = None
    lead_country: str | None = None
    lead_country_code_2: str | None = None
    lead_country_code_3: str | None = None
    lead_state: str | None = None
    lead_phone_country_code: str | None = None
    lead_phone_number: str | None = None
    lead_address: str | None = None
    lead_city: str | None = None
    lead_zip: str | None = None
    lead_ip: str | None = None
    product_name: str | None = None
    product_id: int | None = None
    product_price_point: int | None = None
    vendor_tracking_id_1: str | None = None
    vendor_tracking_id_2: str | None = None
    vendor_tracking_link: str | None = None
    payment_processor_type: PaymentProcessor | None = None
    raw: Mapping[str, Any] = raw_field()


@attrs.frozen(kw_only=True)
class _Paid(Transaction):
    """Fields of the transaction types that move money."""

    transaction_full_amount: Decimal | None = None
    transaction_base_amount: Decimal | None = None
    transaction_discount: Decimal | None = None
    transaction_tax: Decimal | None = None
    transaction_shipping: Decimal | None = None
    transaction_quantity: int | None = None
    transaction_affiliate: str | None = None  #: None for "N/A"
    transaction_jv: str | None = None
    transaction_subscription_pay_number: int | None = None
    shipping_first_name: str | None = None
    shipping_last_name: str | None = None
    shipping_address: str | None = None
    shipping_city: str | None = None
    shipping_zip: str | None = None
    shipping_country: str | None = None
    shipping_state: str | None = None


@attrs.frozen(kw_only=True)
class _Recurring(_Paid):
    rebill_circle: int | None = None  #: days left until the next payment
    installments: int | None = None
    frequency: str | None = None
    payments_left: int | None = None  #: 9999 means "cancelled by customer"


@attrs.frozen(kw_only=True)
class SaleTransaction(_Recurring):
    transaction_last_4_card_digits: str | None = None
    trial: bool | None = None
    trial_period: int | None = None  #: days
    trial_amount: Decimal | None = None


@attrs.frozen(kw_only=True)
class RefundTransaction(_Paid):
    """A refund, partial refund or chargeback (see transaction_type)."""


@attrs.frozen(kw_only=True)
class RebillTransaction(_Recurring):
    failed_reattempt_number: int | None = None


@attrs.frozen(kw_only=True)
class FailedTransaction(_Paid):
    failed_reattempt_number: int | None = None


@attrs.frozen(kw_only=True)
class CancellationTransaction(Transaction):
    transaction_last_4_card_digits: str | None = None


TransactionDetails = Union[  # noqa: UP007 (a runtime alias cattrs structures)
    SaleTransaction,
    RefundTransaction,
    RebillTransaction,
    FailedTransaction,
    CancellationTransaction,
    Transaction,
]
"""get_transaction_details' answer, one class per transaction_type."""


@attrs.frozen(kw_only=True)
class SubscriptionDetails:
    """get_subscription_details' answer."""

    subscription_id: int
    subscription_product_id: int | None = None
    subscription_price_point: int | None = None
    subscription_lead_id: int | None = None
    subscription_start_date: datetime | None = None
    subscription_end_date: datetime | None = None  #: None while active
    subscription_current_installment: int | None = None
    subscription_installments_left: int | UntilCancelled | None = None
    subscription_recurring_period: str | None = None
    subscription_status: SubscriptionStatus | None = None
    subscription_next_payment_date: datetime | None = None
    subscription_next_scheduled_payment_amount: Decimal | None = None
    subscription_affiliate: str | None = None
    subscription_jv: str | None = None
    raw: Mapping[str, Any] = raw_field()


@attrs.frozen(kw_only=True)
class TransactionSummary:
    """One row of retrieve_transactions_from_lead."""

    transaction_id: int
    transaction_type: TransactionType
    lead_id: int | None = None
    lead_email: str | None = None


@attrs.frozen(kw_only=True)
class SubscriptionSummary:
    """One row of retrieve_subscriptions_from_lead."""

    subscription_id: int
    subscription_status: SubscriptionStatus
    lead_id: int | None = None
    lead_email: str | None = None


@attrs.frozen
class RefundResult:
    transaction_refunded: int  #: the refunded transaction's id


@attrs.frozen
class CancelResult:
    transaction_subscription_id: str | None = None  #: PayPal's id for PayPal subscriptions
    transaction_internal_subscription_id: int | None = None
