"""Finishing a deposit outside the user's update lock: the gateway call runs in a task, its answer comes back
through the store (the deposit row) and a message edit.

Updates are serialised per user (SimpleEventIsolation, or RedisEventIsolation on many instances). A handler that
awaited the gateway would hold that lock for as long as the gateway takes, and /start or /cancel would wait behind
it. So the handler only reserves the deposit (local and fast) and hands the gateway call to `Creations`. A cancel
from any instance lands in the store first (TopupService.abandon_creation), and the task honours it there.
"""
from __future__ import annotations

import asyncio
import logging
from contextlib import suppress

from aiogram.exceptions import TelegramAPIError, TelegramBadRequest
from aiogram.fsm.context import FSMContext
from aiogram.types import Message

from handlers.i18n import Translator
from handlers.ui import views
from handlers.user.topup import TopupFlow, creation_refused, send_deposit_card
from services.coupons import CouponError
from services.money import AmountError
from services.store import DepositStatus
from services.store import deposits
from services.topup import Reservation, TopupError, TopupProblem, TopupService

log = logging.getLogger(__name__)

STILL_WORKING_SECONDS = 3.0  # after this, the "Creating…" message says so and offers Cancel


class Creations:
    """The gateway calls in flight for deposits being created, one task each."""

    def __init__(self, topup: TopupService, *, still_working_after: float = STILL_WORKING_SECONDS) -> None:
        self._topup = topup
        self.still_working_after = still_working_after
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self, reservation: Reservation, message: Message, state: FSMContext, t: Translator,
              support_contact: str | None) -> None:
        task = asyncio.create_task(self._finish(reservation, message, state, t, support_contact),
                                   name=f"create-deposit-{reservation.deposit_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def join(self) -> None:
        """Wait until every creation in flight has finished (tests, and a graceful stop)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self, *, grace_seconds: float = 5.0) -> None:
        """On shutdown: let creations in flight finish for a moment, then cut the rest short (each says so)."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=grace_seconds)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def _finish(self, reservation: Reservation, message: Message, state: FSMContext, t: Translator,
                      support_contact: str | None) -> None:
        deposit_id = reservation.deposit_id
        call = asyncio.ensure_future(self._topup.complete_deposit(reservation))
        try:
            done, _ = await asyncio.wait({call}, timeout=self.still_working_after)
            if not done and await self._being_created(deposit_id):
                with suppress(TelegramBadRequest):
                    await message.edit_text(t("confirm.still-working"),
                                            reply_markup=views.creating_keyboard(t, deposit_id))
            deposit = await call
        except asyncio.CancelledError:
            # Shutting down mid-call: the deposit is marked failed; the user must not be left at "Creating…".
            call.cancel()
            await asyncio.gather(call, return_exceptions=True)  # its failure is recorded before the store closes
            with suppress(TelegramAPIError, RuntimeError):
                await message.edit_text(t("topup.interrupted"), reply_markup=views.main_menu(t))
            raise
        except TopupError as exc:
            if exc.problem is TopupProblem.ABANDONED:
                return  # the cancel already said so; the gateway's late deposit was cancelled there
            await self._refused(message, state, t, exc, deposit_id, support_contact)
            return
        except (AmountError, CouponError) as exc:
            await self._refused(message, state, t, exc, deposit_id, support_contact)
            return
        except Exception:  # noqa: BLE001 - the user must hear something whatever went wrong
            log.exception("deposit %s: creation failed", deposit_id)
            with suppress(TelegramAPIError):
                await message.edit_text(t("error.generic") + views.support_line(t, support_contact),
                                        reply_markup=views.main_menu(t))
            return
        if await self._flow_waits_for(state, deposit_id):
            await state.clear()
        try:
            await message.edit_text(t("confirm.created", id=deposit.id), reply_markup=None)
            await send_deposit_card(message, t, self._topup, deposit)
        except TelegramAPIError:
            log.warning("deposit %s: created, but its card could not be sent (History shows it)", deposit_id,
                        exc_info=True)

    async def _refused(self, message: Message, state: FSMContext, t: Translator, exc: Exception, deposit_id: int,
                       support_contact: str | None) -> None:
        """Back to the step that can fix it, if the user is still waiting on this flow; else just say so."""
        with suppress(TelegramAPIError):
            if await self._flow_waits_for(state, deposit_id):
                await creation_refused(message, state, t, self._topup, await state.get_data(), exc,
                                       support_contact=support_contact)
            else:
                await message.edit_text(t("topup.error.temporarily-unavailable")
                                        + views.support_line(t, support_contact), reply_markup=views.main_menu(t))

    async def _being_created(self, deposit_id: int) -> bool:
        deposit = await deposits.get(self._topup.db.reader, deposit_id)
        return deposit is not None and deposit.status is DepositStatus.CREATING

    @staticmethod
    async def _flow_waits_for(state: FSMContext, deposit_id: int) -> bool:
        return (await state.get_state() == TopupFlow.creating.state
                and (await state.get_data()).get("creating") == deposit_id)
