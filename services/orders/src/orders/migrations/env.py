import orders.models  # noqa: F401 - registers the service's tables on Base.metadata
from fastmicro.db import Base
from fastmicro.migrations import run_env
from orders.settings import OrdersSettings

run_env(Base.metadata, default_url=lambda: OrdersSettings().database_url)
