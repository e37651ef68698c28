"""An app with periodic entries for the beat CLI specs (never connects)."""

import rabbitq

app = rabbitq.App("beat-sample", broker="amqp://guest:guest@127.0.0.1:1/")


@app.task
def report(region: str) -> str:
    return region


app.add_periodic(report.s("eu"), cron="0 7 * * *", timezone="Europe/Paris", name="morning")
