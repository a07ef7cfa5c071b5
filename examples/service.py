"""A small asyncio service on kartra_async: sign-ups arrive on a queue, and a few
workers turn each into a Kartra lead tagged "Customer" on the "Newsletter" list, with
the interests the person ticked. The workers share ONE AsyncKartra.

    python examples/service.py

runs it against a fake Kartra in this process (the demo account), so it needs no
Kartra account. With KARTRA_APP_ID, KARTRA_API_KEY and KARTRA_API_PASSWORD set, it
talks to that Kartra account instead (KARTRA_BASE_URL points it elsewhere, e.g. at
`python -m kartra_async.testing`, the fake served over HTTP).

What it shows (see the guides "Chains and results" and "Custom fields"):

- one chain per sign-up, sent as ONE request;
- a lead that already exists makes `create` raise LeadExistsError, with nothing
  applied: the existing lead is tagged instead;
- a failed action (say the tag was deleted in Kartra) comes back in the result, and
  `raise_for_errors()` turns it into a ChainError;
- bad input (an invalid email) raises KartraValidationError before anything is sent;
- custom field options are sent by id: the ids are looked up once, by label.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

from kartra_async import AsyncKartra, KartraError, LeadExistsError

logger = logging.getLogger("signup_service")


@dataclass(frozen=True)
class SignUp:
    email: str
    first_name: str
    interests: tuple[str, ...] = ()  #: labels of the "interests" checkbox field's options


@dataclass(frozen=True)
class Outcome:
    signup: SignUp
    lead_id: int | None = None
    existed: bool = False
    error: str | None = None

    def __str__(self) -> str:
        if self.error is not None:
            return f"{self.signup.email}: refused: {self.error}"
        how = "already a lead, tagged" if self.existed else "new lead, tagged"
        return f"{self.signup.email}: {how} (lead {self.lead_id})"


class SignUpService:
    """Turns sign-ups into Kartra leads: one chain per sign-up, `workers` at a time."""

    def __init__(
        self,
        kartra: AsyncKartra,
        *,
        tag: str = "Customer",
        list_name: str = "Newsletter",
        workers: int = 3,
    ) -> None:
        self.kartra, self.tag, self.list_name, self.workers = kartra, tag, list_name, workers
        self.interest_ids: dict[str, int] = {}

    async def start(self) -> None:
        """Look up the option ids of the "interests" field once (the API takes ids)."""
        fields = {field.identifier: field for field in await self.kartra.account.custom_fields()}
        interests = fields.get("interests")
        if interests is not None:
            self.interest_ids = {option.value: option.id for option in interests.options}

    def custom_fields(self, signup: SignUp) -> dict[str, list[int]]:
        unknown = [label for label in signup.interests if label not in self.interest_ids]
        if unknown:
            known = ", ".join(self.interest_ids) or "none"
            raise ValueError(f"no interest named {unknown[0]!r} (options: {known})")
        if not signup.interests:
            return {}
        return {"interests": [self.interest_ids[label] for label in signup.interests]}

    async def sign_up(self, signup: SignUp) -> Outcome:
        """Create the lead (or find it), tag it and subscribe it; raises on failure."""
        lead = self.kartra.lead(signup.email)  # KartraValidationError for a bad email
        custom_fields = self.custom_fields(signup)
        try:
            result = await (
                lead.create(first_name=signup.first_name, custom_fields=custom_fields)
                .assign_tag(self.tag)
                .subscribe_list(self.list_name)
            )
            existed = False
        except LeadExistsError:  # refused as a whole: nothing was applied
            chain = lead.edit(custom_fields=custom_fields) if custom_fields else lead.search()
            result = await chain.assign_tag(self.tag).subscribe_list(self.list_name)
            existed = True
        result.raise_for_errors()  # ChainError if the tag or the list is missing
        return Outcome(signup, result.lead_id, existed)

    async def _worker(self, queue: asyncio.Queue[tuple[int, SignUp]], out: list[Outcome]) -> None:
        while True:
            index, signup = await queue.get()
            try:
                out[index] = await self.sign_up(signup)
            except (KartraError, ValueError) as exc:
                logger.warning("sign-up of %s failed: %s", signup.email, exc)
                out[index] = Outcome(signup, error=str(exc))
            finally:
                queue.task_done()

    async def run(self, signups: Sequence[SignUp]) -> list[Outcome]:
        """Handle every sign-up; the outcomes in the order of `signups`."""
        queue: asyncio.Queue[tuple[int, SignUp]] = asyncio.Queue()
        out: list[Outcome] = [Outcome(s, error="not handled") for s in signups]
        workers = [asyncio.create_task(self._worker(queue, out)) for _ in range(self.workers)]
        for item in enumerate(signups):
            queue.put_nowait(item)
        try:
            await queue.join()
        finally:
            for worker in workers:
                worker.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
        return out


@asynccontextmanager
async def open_kartra() -> AsyncIterator[AsyncKartra]:
    """The Kartra the environment names, or a fake one with the demo account."""
    if os.environ.get("KARTRA_APP_ID"):
        async with AsyncKartra.from_env() as kartra:
            print(f"Kartra at {kartra.base_url}")
            yield kartra
        return
    from kartra_async.testing import FakeKartra

    fake = FakeKartra()
    fake.seed()
    async with fake.client() as kartra:
        print("a fake Kartra with the demo account (set KARTRA_APP_ID & co. for a real one)")
        yield kartra


SIGNUPS = (
    SignUp("ada@example.com", "Ada", ("Marketing", "Sales")),
    SignUp("alice@example.com", "Alice", ("Support",)),
    SignUp("grace@example.com", "Grace"),
    SignUp("not-an-email", "Nobody"),
    SignUp("linus@example.com", "Linus", ("Gardening",)),
)


async def main() -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    async with open_kartra() as kartra:
        service = SignUpService(kartra)
        await service.start()
        outcomes = await service.run(SIGNUPS)
        for outcome in outcomes:
            print(outcome)
        ada = await kartra.get_lead("ada@example.com")
        interests = ada.custom_field("interests")
        print(
            f"ada@example.com: tags {ada.tags}, interests {interests.text if interests else None}"
        )
    refused = sum(1 for outcome in outcomes if outcome.error is not None)
    print(f"{len(outcomes) - refused} signed up, {refused} refused")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
