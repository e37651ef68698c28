"""POST /orders/ places an order and enqueues its receipt once the order is committed."""

import json

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from orders.models import Order
from orders.tasks import send_receipt


@csrf_exempt  # an API endpoint for the example; keep CSRF protection for browser forms
@require_POST
def place_order(request: HttpRequest) -> JsonResponse:
    order = Order.objects.create(item=json.loads(request.body)["item"])
    # Not .delay(): a worker could look for the order before this transaction commits.
    send_receipt.delay_on_commit(order.pk)
    if request.GET.get("fail"):
        # The request's transaction (ATOMIC_REQUESTS) rolls back: no order, no message.
        raise RuntimeError("payment declined")
    return JsonResponse({"id": order.pk}, status=201)


@require_GET
def show_order(request: HttpRequest, order_id: int) -> JsonResponse:
    order = Order.objects.filter(pk=order_id).first()
    if order is None:
        return JsonResponse({"error": "no such order"}, status=404)
    return JsonResponse({"id": order.pk, "item": order.item, "receipt_sent": order.receipt_sent})
