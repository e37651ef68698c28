"""The orders app's tasks, found by ``autodiscover_tasks`` in shop_site/rabbitq_app.py."""

from shop_site.rabbitq_app import app

from orders.models import Order


@app.task
def send_receipt(order_id: int) -> None:
    # The row is there: the view's transaction committed before the message was published.
    order = Order.objects.get(pk=order_id)
    order.receipt_sent = True
    order.save(update_fields=["receipt_sent"])
