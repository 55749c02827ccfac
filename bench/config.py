"""What a bench run measures and where: the profile (full or smoke) and the run's own names and ports."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[1]
SERVICES = ("users", "orders", "notifications")
#: The services that have a raw twin (GET /users/me; GET and POST /orders).
RAW_SERVICES = ("users", "orders")


@dataclass(frozen=True)
class Profile:
    name: str
    rounds: int
    #: wrk: -t threads, -c connections, -d seconds; a warm-up run per target before the rounds (0: none)
    wrk_threads: int
    wrk_connections: int
    wrk_seconds: int
    warmup_seconds: int
    users: int
    relay_rows: int
    consumer_events: int
    sender_mails: int
    e2e_rate: int
    e2e_seconds: float
    break_point_rates: tuple[int, ...]
    break_point_seconds: float
    #: orders placed on a freshly started stack before it is measured (rate, seconds; 0: none), not counted
    e2e_warmup: tuple[float, float]
    #: how long to wait for the stack to catch up (mails of a run, a backlog) before giving up on it
    drain_timeout: float
    #: how long one batch of worker work (relay, consumer, sender) may take before it counts as stuck
    batch_timeout: float


FULL = Profile(
    name="full",
    rounds=3,
    wrk_threads=2,
    wrk_connections=50,
    wrk_seconds=15,
    warmup_seconds=3,
    users=200,
    relay_rows=5000,
    consumer_events=5000,
    sender_mails=2000,
    e2e_rate=200,
    e2e_seconds=60,
    break_point_rates=(50, 100, 150, 200, 300, 400, 500, 600),
    break_point_seconds=20,
    e2e_warmup=(50, 3),
    drain_timeout=90,
    batch_timeout=600,
)

SMOKE = Profile(
    name="smoke",
    rounds=1,
    wrk_threads=2,
    wrk_connections=4,
    wrk_seconds=1,
    warmup_seconds=0,
    users=20,
    relay_rows=50,
    consumer_events=50,
    sender_mails=50,
    e2e_rate=20,
    e2e_seconds=3,
    break_point_rates=(20,),
    break_point_seconds=2,
    e2e_warmup=(0, 0),
    drain_timeout=30,
    batch_timeout=60,
)


@dataclass(frozen=True)
class Setup:
    """One run's own databases (`<prefix><service>`), broker namespace, ports and folders."""

    profile: Profile
    postgres_url: str  # libpq URL of a server where databases can be created
    amqp_url: str
    db_prefix: str = "bench_"
    amqp_namespace: str = "bench."
    base_port: int = 18000
    results_dir: Path = ROOT / "bench"
    work_dir: Path = ROOT / "bench" / "out"

    def port(self, service: str) -> int:
        """The project service's HTTP port: base + 1, 2, 3."""
        return self.base_port + 1 + SERVICES.index(service)

    def raw_port(self, service: str) -> int:
        """The raw twin's HTTP port: base + 1001, 1002."""
        return self.base_port + 1001 + RAW_SERVICES.index(service)

    @property
    def smtp_port(self) -> int:
        return self.base_port + 25

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.port(service)}"

    def raw_url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.raw_port(service)}"

    def database(self, service: str) -> str:
        return f"{self.db_prefix}{service}"

    def dsn(self, service: str) -> str:
        """libpq URL of the service's bench database (asyncpg)."""
        return _with_database(self.postgres_url, self.database(service))

    def sqlalchemy_url(self, service: str) -> str:
        return self.dsn(service).replace("postgresql://", "postgresql+asyncpg://", 1)

    def queue(self, service: str) -> str:
        return f"{self.amqp_namespace}{service}.events"

    def ports(self) -> list[int]:
        return [*(self.port(s) for s in SERVICES), *(self.raw_port(s) for s in RAW_SERVICES), self.smtp_port]


def _with_database(url: str, database: str) -> str:
    return make_url(url).set(database=database).render_as_string(hide_password=False)
