import rabbitq

app = rabbitq.App("sample", broker="amqp://guest:guest@127.0.0.1:1/")
