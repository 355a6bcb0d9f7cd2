"""`gridwatch broker`: the broker's accounts and certificates, and Mosquitto run with broker_config/'s policy."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gridwatch.broker import BrokerError
from gridwatch.cli_args import port_number, stop_on_signals
from gridwatch.config_files import read_secret


def cmd_broker_users(args: argparse.Namespace) -> int:
    from gridwatch.broker import BROKER_CONFIG_DIR, generate_users

    # the ACL the broker will use: the one in --out (a deployed copy, edited for the city), else the repo's
    acl = args.out / "acl" if (args.out / "acl").is_file() else BROKER_CONFIG_DIR / "acl"
    creds = generate_users(args.out, args.node, args.integrator, acl_file=acl, bridges=args.bridge)
    print(f"wrote {args.out / 'passwd'} ({len(creds.all_accounts())} accounts) and {args.out / 'credentials.json'}")
    return 0


def cmd_broker_tls(args: argparse.Namespace) -> int:
    from gridwatch.broker import generate_tls

    files = generate_tls(args.out, tuple(args.host), args.days)
    print(f"wrote {files.ca_cert} (give it to nodes and the server: mqtt.tls_ca_file), {files.cert} and {files.key}")
    return 0


def cmd_broker_run(args: argparse.Namespace) -> int:
    from gridwatch.broker import Bridge, Broker

    bridge = None
    if args.bridge_to:
        host, _, port = args.bridge_to.rpartition(":")
        if not host or not port.isdigit():
            raise BrokerError(f"--bridge-to {args.bridge_to!r}: give the core broker as HOST:PORT")
        if not args.bridge_password_file:
            raise BrokerError("--bridge-to needs --bridge-password-file (the bridge account's password)")
        if args.bridge_ca_file is not None:  # Mosquitto would say so only in its own log, and run without the bridge
            from gridwatch.mqtt import check_ca_file

            check_ca_file(args.bridge_ca_file, "--bridge-ca-file")
        bridge = Bridge(name=args.bridge_name, host=host, port=int(port), username=args.bridge_user,
                        password=read_secret(args.bridge_password_file, "--bridge-password-file"),
                        ca_file=args.bridge_ca_file)
    broker = Broker(args.data_dir, args.passwd, port=args.port or None, bind=args.bind, bridge=bridge).start()
    print(f"mosquitto on {broker.bind}:{broker.port}; Ctrl-C stops it", flush=True)
    stop = stop_on_signals()
    while not stop.wait(1):
        if broker.process is None or broker.process.poll() is not None:
            print(broker.log_tail(), file=sys.stderr)
            return 1
    broker.stop()
    return 0


def add_broker_command(commands: argparse._SubParsersAction) -> None:
    """The `broker` command and its actions, on the `gridwatch` parser's subcommands."""
    broker = commands.add_parser("broker", help="Broker accounts and a Mosquitto run from broker_config/.",
                                 description="Generate broker accounts, or run Mosquitto with the project's policy.")
    broker_commands = broker.add_subparsers(dest="broker_command", required=True, metavar="ACTION",
                                            help="users: make accounts; tls: make certificates; run: start "
                                                 "Mosquitto.")
    users = broker_commands.add_parser("users", help="Generate the password file and credentials.json.",
                                       description="Write DIR/passwd (Mosquitto hashes) and DIR/credentials.json "
                                                   "(plain passwords, mode 0600) for the server, nodes and "
                                                   "integrators. Accounts DIR holds already keep their passwords: "
                                                   "run it again with a new --node to add one. Never commit either "
                                                   "file.")
    users.add_argument("--out", type=Path, required=True, help="Folder to write passwd and credentials.json into.")
    users.add_argument("--node", action="append", default=[], metavar="NODE_ID",
                       help="A node account (its user name is its node id); repeat for more.")
    users.add_argument("--integrator", action="append", default=[], metavar="NAME",
                       help="A read-only integrator account; the name needs a block in the ACL (DIR/acl when DIR "
                            "has one, as a deployed copy of broker_config does; else broker_config/acl). "
                            "Repeat for more.")
    users.add_argument("--bridge", action="append", default=[], metavar="NAME",
                       help="An account a site's broker bridges in with (on the core broker); the name needs a "
                            "block in the ACL, as for --integrator (copy 'user bridge'). Repeat for more.")
    users.set_defaults(func=cmd_broker_users)
    tls = broker_commands.add_parser("tls", help="Make a private CA and the broker's TLS certificate.",
                                     description="Write DIR/ca.crt (what nodes and the server trust), "
                                                 "DIR/server.crt and DIR/server.key (mode 0600) with openssl, for "
                                                 "the TLS listener in broker_config/mosquitto.conf. Never commit "
                                                 "the keys.")
    tls.add_argument("--out", type=Path, required=True, help="Folder to write the certificates and keys into.")
    tls.add_argument("--host", action="append", required=True, metavar="NAME_OR_ADDRESS",
                     help="A name or address clients reach the broker by; repeat for more (the first is the CN).")
    tls.add_argument("--days", type=int, default=825, help="Validity of the certificates (default 825 days).")
    tls.set_defaults(func=cmd_broker_tls)
    run = broker_commands.add_parser("run", help="Run Mosquitto with broker_config/ on a port of your choice.",
                                     description="Run Mosquitto with broker_config/'s policy, a private data "
                                                 "folder and the given password file.")
    run.add_argument("--passwd", type=Path, required=True, help="Password file from `gridwatch broker users`.")
    run.add_argument("--data-dir", type=Path, required=True, help="Folder for persistence, config and log.")
    run.add_argument("--port", type=port_number, help="Port to listen on (default, or 0: a free one, printed; "
                                                      "give 1883 for the usual port).")
    run.add_argument("--bind", default="127.0.0.1", help="Address to listen on (default 127.0.0.1).")
    run.add_argument("--bridge-to", metavar="HOST:PORT",
                     help="Run as a site's broker: bridge what its nodes publish to this core broker (where the "
                          "server reads) and bring configs, commands and cases back.")
    run.add_argument("--bridge-name", default="site", help="This site's name on the link (default: site).")
    run.add_argument("--bridge-user", default="bridge", help="The bridge account on the core broker (default: bridge).")
    run.add_argument("--bridge-password-file", type=Path, metavar="FILE",
                     help="A file holding the bridge account's password (from the core's credentials.json).")
    run.add_argument("--bridge-ca-file", type=Path, metavar="FILE",
                     help="The core broker's CA certificate, to bridge over TLS (its TLS port in --bridge-to).")
    run.set_defaults(func=cmd_broker_run)
