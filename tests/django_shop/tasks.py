from __future__ import annotations

import rabbitq

app = rabbitq.App("django_shop", broker="amqp://guest:guest@127.0.0.1:1/")


@app.task
def send_receipt(order_id: int) -> None: ...
