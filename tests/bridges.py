"""A city of brokers for tests: the core broker (the server's) and site brokers bridged to it, all real Mosquitto
processes from broker_config/ with generated accounts."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gridwatch.broker import Bridge, Broker, Credentials, generate_users
from tests.conftest import Subscriber


@dataclass
class City:
    core: Broker
    core_accounts: Credentials
    sites: list[tuple[Broker, Credentials]]
    clients: list[Subscriber]

    def client(self, broker: Broker, accounts: Credentials, user: str, session_expiry: int = 0) -> Subscriber:
        client = Subscriber(broker.port, user, accounts.all_accounts()[user], client_id=f"{user}-{len(self.clients)}",
                            session_expiry=session_expiry)
        assert not client.reason.is_failure, client.reason
        self.clients.append(client)
        return client


def start_city(root: Path, site_nodes: list[list[str]]) -> City:
    """A core broker (the server's) and a site broker per list of nodes, each bridged to the core."""
    core_accounts = generate_users(root / "core", [], ["integrator"], bridges=["bridge"])
    core = Broker(root / "core" / "data", root / "core" / "passwd").start()
    sites = []
    for number, nodes in enumerate(site_nodes):
        folder = root / f"site-{number}"
        accounts = generate_users(folder, nodes, ["integrator"])
        bridge = Bridge(name=f"site-{number}", host="127.0.0.1", port=core.port, username="bridge",
                        password=core_accounts.bridges["bridge"])
        sites.append((Broker(folder / "data", folder / "passwd", bridge=bridge).start(), accounts))
    return City(core, core_accounts, sites, [])


def stop_city(city: City) -> None:
    for client in city.clients:
        client.close()
    for broker, _ in city.sites:
        broker.stop()
    city.core.stop()
