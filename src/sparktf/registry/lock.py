"""The promotion lock: one promotion at a time per registered model, on any MLflow store.

MLflow has no compare-and-set: two clients that read an alias (or a tag used as a
lease) and then write it can both believe they won. The one atomic operation every
MLflow store offers is **creating a model version**: the store gives the new
version the next number inside a transaction with a unique (name, version) key,
and a deleted version's number is never handed out again (the SQL store only marks
it deleted). So the lock is a ticket lock on a companion registered model,
``<name>.promotion-lock``:

1. **Take a ticket**: create a version of the lock model; its number is the
   ticket, its tags say who holds it (``owner``) and until when (``expires_ms``).
2. **Wait for your turn**: the lock is yours when every live ticket with a smaller
   number is gone or expired. Tickets are ordered by the store, so two waiters can
   never both see themselves first.
3. **Release**: delete your ticket.

A holder that dies leaves a ticket that expires after ``ttl_seconds``; waiters
ignore it (and delete it). While waiting and while holding, the owner renews its
lease, and :meth:`PromotionLock.check_held` refuses to go on once the lease is
gone, so a holder stalled past its lease stops before writing. Expiry compares the
holder's clock with the waiter's: ``ttl_seconds`` must exceed their skew. The
promotion then re-reads and verifies the aliases after writing them (see
:mod:`sparktf.registry.promote`), which holds even if this timing assumption fails.

Why our own code: MLflow offers no lock, and a file lock covers only a local
SQLite store, not two machines promoting through one ``mlflow server``.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import time
import uuid
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

from sparktf.errors import RegistryError
from sparktf.registry.registry import mlflow_errors

if TYPE_CHECKING:
    from mlflow import MlflowClient

__all__ = ["PromotionLock", "Ticket", "default_owner", "lock_model_name"]

log = logging.getLogger(__name__)

OWNER_TAG = "owner"
EXPIRES_TAG = "expires_ms"
# Any absolute URI is accepted as a version source by the server's validation; this
# one names what the "model" is, and nothing ever downloads it.
_TICKET_SOURCE = "sparktf-lock:/promotion-ticket"


class _TicketGone(Exception):
    """Our ticket no longer exists (internal signal)."""


def lock_model_name(name: str) -> str:
    """The companion registered model whose versions are the lock's tickets."""
    return f"{name}.promotion-lock"


def default_owner() -> str:
    """``host:pid:random``: unique per lock object, readable in error messages."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True)
class Ticket:
    """One live ticket of the lock model.

    Attributes:
        number: the version number, the ticket's place in the queue.
        owner: who took it.
        expires_ms: when its lease ends (the owner's clock), ms since the epoch.
    """

    number: int
    owner: str
    expires_ms: int

    def expired(self, now_ms: int) -> bool:
        return now_ms >= self.expires_ms

    def describe(self, now_ms: int) -> str:
        left = (self.expires_ms - now_ms) / 1000
        state = f"lease ends in {left:.0f} s" if left > 0 else f"lease ended {-left:.0f} s ago"
        return f"ticket {self.number} of {self.owner} ({state})"


class PromotionLock:
    """A context manager holding the promotion lock of one registered model.

    Args:
        client: an ``MlflowClient`` on the store that holds the registered model.
        name: the registered model.
        tracking_uri: the store's URI (for error messages).
        ttl_seconds: the lease; a holder that stops renewing is ignored after this.
        timeout_seconds: how long :meth:`acquire` waits before giving up.
        owner: who is asking (default :func:`default_owner`).
        poll_seconds: the pause between looks at the queue (jittered).

    Example:
        >>> with PromotionLock(client, "recommender", uri) as lock:  # doctest: +SKIP
        ...     lock.check_held()
        ...     client.set_registered_model_alias("recommender", "champion", "3")
    """

    def __init__(
        self,
        client: MlflowClient,
        name: str,
        tracking_uri: str,
        *,
        ttl_seconds: float = 120.0,
        timeout_seconds: float = 600.0,
        owner: str | None = None,
        poll_seconds: float = 0.2,
    ) -> None:
        self.client = client
        self.name = name
        self.lock_model = lock_model_name(name)
        self.tracking_uri = tracking_uri
        self.ttl_ms = int(ttl_seconds * 1000)
        self.timeout_seconds = timeout_seconds
        self.owner = owner or default_owner()
        self.poll_seconds = poll_seconds
        self.ticket: int | None = None
        self._expires_ms = 0
        self.held = False

    def __repr__(self) -> str:
        return f"PromotionLock({self.name!r}, owner={self.owner!r}, ticket={self.ticket}, held={self.held})"

    def _errors(self, action: str, *, ignore: tuple[str, ...] = ()) -> Any:
        return mlflow_errors(action, self.tracking_uri, ignore=ignore, model=self.lock_model)

    # ----------------------------------------------------------------- queue

    def _take_ticket(self) -> int:
        from mlflow.exceptions import MlflowException

        self._expires_ms = _now_ms() + self.ttl_ms
        tags = {OWNER_TAG: self.owner, EXPIRES_TAG: str(self._expires_ms)}
        with self._errors(f"Taking a ticket of {self.lock_model!r}"):
            try:
                mv = self.client.create_model_version(self.lock_model, _TICKET_SOURCE, tags=tags, await_creation_for=0)
            except MlflowException as exc:
                if getattr(exc, "error_code", "") != "RESOURCE_DOES_NOT_EXIST":
                    raise
                # The first promotion of this model: create the lock model (another process may too).
                description = f"Promotion lock of {self.name!r} (sparktf). Each version is a ticket; not a model."
                try:
                    self.client.create_registered_model(self.lock_model, description=description)
                except MlflowException as again:
                    if getattr(again, "error_code", "") != "RESOURCE_ALREADY_EXISTS":
                        raise
                mv = self.client.create_model_version(self.lock_model, _TICKET_SOURCE, tags=tags, await_creation_for=0)
        return int(str(mv.version))

    def tickets(self) -> list[Ticket]:
        """The live tickets, in queue order."""
        out: list[Ticket] = []
        token: str | None = None
        with self._errors(f"Reading the queue of {self.lock_model!r}"):
            while True:
                page = self.client.search_model_versions(
                    filter_string=f"name = '{self.lock_model}'", max_results=1000, page_token=token
                )
                for mv in page:
                    tags = mv.tags or {}
                    try:
                        expires = int(tags.get(EXPIRES_TAG, "0"))
                    except ValueError:
                        expires = 0  # unreadable: treat as expired rather than block forever
                    out.append(Ticket(int(str(mv.version)), str(tags.get(OWNER_TAG, "unknown")), expires))
                token = page.token
                if not token:
                    break
        return sorted(out, key=lambda t: t.number)

    def _renew(self) -> None:
        from mlflow.exceptions import MlflowException

        assert self.ticket is not None
        expires = _now_ms() + self.ttl_ms
        try:
            with self._errors(f"Renewing ticket {self.ticket} of {self.lock_model!r}", ignore=()):
                try:
                    self.client.set_model_version_tag(self.lock_model, str(self.ticket), EXPIRES_TAG, str(expires))
                except MlflowException as exc:
                    if getattr(exc, "error_code", "") != "RESOURCE_DOES_NOT_EXIST":
                        raise
                    raise _TicketGone from None
        except _TicketGone:
            # Deleted by a waiter that saw it expired: the lock is no longer ours.
            self.held = False
            raise RegistryError(
                f"Lost the promotion lock of {self.name!r}: ticket {self.ticket} of {self.owner} was removed, "
                "most likely because its lease expired while this process was stalled.",
                hint="Nothing was changed after the lease ended; run the promotion again "
                "(raise gate.lock_ttl_seconds if the store is slow).",
                model=self.name,
            ) from None
        self._expires_ms = expires

    def _delete_ticket(self, number: int) -> None:
        with self._errors(f"Deleting ticket {number} of {self.lock_model!r}", ignore=("RESOURCE_DOES_NOT_EXIST",)):
            self.client.delete_model_version(self.lock_model, str(number))

    # ----------------------------------------------------------------- API

    def acquire(self) -> None:
        """Wait until this process holds the lock.

        Raises:
            RegistryError: the lock stayed busy for ``timeout_seconds`` (the message
                names the holder and its lease), or the store failed.
        """
        if self.held:
            return
        self.ticket = self._take_ticket()
        deadline = time.monotonic() + self.timeout_seconds
        try:
            while True:
                now = _now_ms()
                ahead = [t for t in self.tickets() if t.number < self.ticket]
                for stale in (t for t in ahead if t.expired(now)):
                    log.warning("promotion lock of %s: ignoring %s", self.name, stale.describe(now))
                    self._delete_ticket(stale.number)
                blockers = [t for t in ahead if not t.expired(now)]
                if not blockers:
                    self.held = True
                    if self._expires_ms - _now_ms() < self.ttl_ms / 2:
                        self._renew()
                    return
                if time.monotonic() >= deadline:
                    raise RegistryError(
                        f"The promotion lock of {self.name!r} is busy: {blockers[0].describe(now)} is ahead of "
                        f"this process's ticket {self.ticket} ({len(blockers)} waiting ahead) after "
                        f"{self.timeout_seconds:.0f} s.",
                        hint="Another promotion or rollback is running; wait for it, or raise "
                        "gate.lock_timeout_seconds. A dead holder is ignored once its lease ends.",
                        model=self.name,
                        holder=blockers[0].owner,
                    )
                if self._expires_ms - _now_ms() < self.ttl_ms / 2:
                    self._renew()
                time.sleep(self.poll_seconds * (0.5 + random.random()))  # noqa: S311 - jitter, not crypto
        except BaseException:
            self._delete_ticket(self.ticket)
            self.ticket = None
            self.held = False
            raise

    def check_held(self, margin_seconds: float = 5.0) -> None:
        """Renew the lease and make sure it is still ours; call before each write.

        Raises:
            RegistryError: the lock is not held or the lease was lost.
        """
        if not self.held or self.ticket is None:
            raise RegistryError(
                f"The promotion lock of {self.name!r} is not held by {self.owner}; refusing to write.",
                model=self.name,
            )
        if self._expires_ms - _now_ms() < margin_seconds * 1000:
            log.warning("promotion lock of %s: lease nearly over before a write; renewing", self.name)
        self._renew()

    def release(self) -> None:
        """Give the lock up (deleting the ticket); safe to call twice."""
        if self.ticket is not None:
            self._delete_ticket(self.ticket)
        self.ticket = None
        self.held = False

    def __enter__(self) -> PromotionLock:
        self.acquire()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
