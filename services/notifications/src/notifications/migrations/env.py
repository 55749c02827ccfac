import notifications.models  # noqa: F401 - registers the service's tables on Base.metadata
from fastmicro.db import Base
from fastmicro.migrations import run_env
from notifications.settings import NotificationsSettings

run_env(Base.metadata, default_url=lambda: NotificationsSettings().database_url)
