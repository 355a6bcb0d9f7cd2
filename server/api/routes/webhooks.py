"""Webhook subscriptions (admins) and their delivery log."""

from __future__ import annotations

import re
import secrets
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from sqlalchemy import func, select

from gridwatch.redact import redacted
from server.api.deps import BigRowId, OperatorDep, PageNumber, PageSize, RowId, SessionDep, allow, get_caller
from server.api.schemas import DeliveryOut, Page, WebhookCreated, WebhookIn, WebhookOut
from server.core.security import Role, TokenEntry
from server.models import WebhookDelivery, WebhookSubscription, utcnow
from server.services.webhooks import overtaken

router = APIRouter(prefix="/api/v1/webhooks", tags=["webhooks"], dependencies=[Depends(get_caller)])
AdminDep = Annotated[TokenEntry, Depends(allow(Role.ADMIN))]


@router.post("", response_model=WebhookCreated, status_code=201,
             summary="Subscribe a URL to case changes; the answer shows the signing secret, once")
def create_webhook(body: WebhookIn, session: SessionDep, caller: AdminDep) -> WebhookCreated:
    subscription = WebhookSubscription(
        url=str(body.url), secret=secrets.token_hex(32), categories=[c.value for c in body.categories],
        actions=[a.value for a in body.actions], description=body.description, created_by=caller.name)
    session.add(subscription)
    session.commit()
    return WebhookCreated.model_validate(subscription)


@router.get("", response_model=list[WebhookOut], summary="Webhook subscriptions (without their secrets)")
def list_webhooks(session: SessionDep, caller: OperatorDep) -> list[WebhookOut]:
    """Admins see each URL whole; operators without its user, password and query (often a credential)."""
    listed = [WebhookOut.model_validate(s) for s in session.scalars(select(WebhookSubscription)
                                                                    .order_by(WebhookSubscription.id))]
    if caller.role is not Role.ADMIN:
        listed = [subscription.model_copy(update={"url": redacted(subscription.url)}) for subscription in listed]
    return listed


@router.delete("/{webhook_id}", status_code=204, summary="Stop a subscription (its delivery log stays)")
def delete_webhook(webhook_id: RowId, session: SessionDep, _caller: AdminDep) -> None:
    subscription = session.get(WebhookSubscription, webhook_id)
    if subscription is None:
        raise HTTPException(status_code=404, detail=f"webhook {webhook_id} does not exist")
    subscription.active = False
    session.commit()


@router.get("/{webhook_id}/deliveries", response_model=Page[DeliveryOut], summary="The delivery log, newest first")
def list_deliveries(
    webhook_id: RowId,
    session: SessionDep,
    caller: OperatorDep,
    status: Annotated[str | None, Query(pattern="^(pending|delivered|failed)$")] = None,
    page: PageNumber = 1,
    page_size: PageSize = 50,
) -> Page[DeliveryOut]:
    if session.get(WebhookSubscription, webhook_id) is None:
        raise HTTPException(status_code=404, detail=f"webhook {webhook_id} does not exist")
    query = select(WebhookDelivery).where(WebhookDelivery.subscription_id == webhook_id)
    if status:
        query = query.where(WebhookDelivery.status == status)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.order_by(WebhookDelivery.id.desc()).offset((page - 1) * page_size)
                           .limit(page_size)).all()
    items = [DeliveryOut.model_validate(r) for r in rows]
    if caller.role is not Role.ADMIN:
        items = [item.model_copy(update={"last_error": _without_reply(item.last_error)}) for item in items]
    return Page(items=items, total=total, page=page, page_size=page_size)


def _without_reply(error: str | None) -> str | None:
    """A failed attempt as operators see it: the status without the receiver's reply. Only an admin chooses where
    webhooks go (anywhere the server reaches, a city's internal services too), and what such a service answers
    may be anything (its own configuration, a credential): the reply is for admins."""
    if error is None or not (reply := re.fullmatch(r"(HTTP \d{3}): .*", error, re.DOTALL)) or \
            re.fullmatch(r"HTTP 3\d\d: moved to \S+ \(redirects are not followed: change the subscription's URL\)",
                         error):  # the server's own words, the address already redacted
        return error
    return f"{reply.group(1)} (the receiver's reply is shown to admins)"


@router.post("/deliveries/{delivery_id}/retry", response_model=DeliveryOut,
             summary="Send a failed delivery again now")
def retry_delivery(delivery_id: BigRowId, session: SessionDep, _caller: AdminDep, request: Request,
                   out_of_order: Annotated[bool, Query(description=(
                       "Send it even though a later change of its case was delivered since: the receiver then gets "
                       "an older state after a newer one."))] = False) -> DeliveryOut:
    delivery = session.get(WebhookDelivery, delivery_id)
    if delivery is None:
        raise HTTPException(status_code=404, detail=f"delivery {delivery_id} does not exist")
    if delivery.status != "failed":
        raise HTTPException(status_code=409, detail=f"delivery {delivery_id} is {delivery.status}; only failed ones "
                                                    f"are retried by hand")
    later = overtaken(session, delivery)
    if later is not None and not out_of_order:
        raise HTTPException(status_code=409, detail=(
            f"delivery {later}, a later change of case {delivery.case_id}, reached the receiver already: this older "
            f"one sent now would put the case back in the receiver's eyes; add out_of_order=true to send it anyway"))
    # a later change of the case pending may be on its way now: this one waits until that attempt is over, and
    # without out_of_order the sender refuses it then if the later one reached the receiver first
    in_flight = not out_of_order and overtaken(session, delivery, "pending") is not None
    sender = request.app.state.webhooks
    delivery.status, delivery.attempts, delivery.out_of_order = "pending", 0, out_of_order
    delivery.next_attempt_at = utcnow() + (sender.lease if in_flight else timedelta(0))
    subscription = session.get(WebhookSubscription, delivery.subscription_id)
    if subscription is not None:  # asked for now: not after the rest of an endpoint that could not be reached
        subscription.resting_until, subscription.unanswered = None, 0
    session.commit()
    request.app.state.webhooks.wakeup.set()
    return DeliveryOut.model_validate(delivery)


