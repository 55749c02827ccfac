import users.models  # noqa: F401 - registers the service's tables on Base.metadata
from fastmicro.db import Base
from fastmicro.migrations import run_env
from users.settings import UsersSettings

run_env(Base.metadata, default_url=lambda: UsersSettings().database_url)
