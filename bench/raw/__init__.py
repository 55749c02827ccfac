"""The raw twins: the same work as the project's hot paths, written with nothing but the libraries.

Starlette + asyncpg + PyJWT + orjson for HTTP (app.py), aio-pika for the relay's publishing
(publisher.py) and the consumer (consumer.py), aiosmtplib for the email sender (mailer.py).
They read and write the project's own tables, so the database does the same work for both.
"""
