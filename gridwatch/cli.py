"""`gridwatch`: one command for the edge node, the server, the broker and the demo."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from pydantic import ValidationError

from gridwatch.broker import BrokerError
from gridwatch.cli_args import port_number, stop_on_signals
from gridwatch.cli_broker import add_broker_command
from gridwatch.cli_models import add_models_command
from gridwatch.config_files import ConfigError
from gridwatch.logs import setup_logging

log = logging.getLogger("gridwatch")
DEFAULT_MANIFEST_PATH = Path(__file__).resolve().parents[1] / "models" / "coco.yaml"
SHUTDOWN_GRACE_SECONDS = 10
"""How long a stopping server lets requests still running finish before it cancels them."""


OTHER_VARIABLES = frozenset({"GRIDWATCH_MODEL", "GRIDWATCH_MQTT_PASSWORD", "GRIDWATCH_API_TOKEN"})
"""The GRIDWATCH_ variables read besides the server's settings (README, Configuration reference)."""


def warn_of_unknown_variables() -> list[str]:
    """A GRIDWATCH_ variable the server does not read is a misspelling, or an old name: say so, with the closest
    one, rather than start on the default it meant to change."""
    import difflib

    from server.core.config import ServerSettings

    known = OTHER_VARIABLES | {f"GRIDWATCH_{name.upper()}" for name in ServerSettings.model_fields}
    unknown = sorted(name for name in os.environ if name.startswith("GRIDWATCH_") and name not in known)
    for name in unknown:
        close = difflib.get_close_matches(name, known, n=1)
        log.warning("environment variable %s is no GridWatch setting%s; it is ignored", name,
                    f" (did you mean {close[0]}?)" if close else "")
    return unknown


def cmd_edge(args: argparse.Namespace) -> int:
    from edge.config import NodeConfig, load_node_config
    from edge.node import EdgeNode

    if args.config is None:
        raise ConfigError("gridwatch edge needs --config NODE.yaml (or use `gridwatch edge scan`)")

    def overrides(config: NodeConfig) -> NodeConfig:  # also at each `reload`, over the file read again
        if args.source:
            if len(config.cameras) != 1:
                raise ConfigError("--source replaces the source of a single camera; the config has several")
            config.cameras[0].source = args.source
        if args.model:
            config.model = args.model
        return config

    config = overrides(load_node_config(args.config))
    if args.model:
        import os

        os.environ.pop("GRIDWATCH_MODEL", None)
    from edge.capture import CaptureError
    from edge.detect import ModelError

    try:
        node = EdgeNode.build(config, args.config, overrides)
    except ModelError as error:
        raise ConfigError(str(error)) from None
    except CaptureError as error:  # a video file that is not there: named, not a traceback
        raise ConfigError(f"cameras: {error}") from None
    return node.run(stop_on_signals())


def cmd_edge_scan(args: argparse.Namespace) -> int:
    from datetime import datetime

    from edge.detect import ModelError
    from edge.scan import load_camera, scan

    if not args.video.exists():
        raise ConfigError(f"video {args.video} does not exist")
    camera = load_camera(args.camera, args.video)
    try:
        start = datetime.fromisoformat(args.start) if args.start else None
    except ValueError:
        raise ConfigError(f"--start {args.start!r}: an ISO 8601 time, e.g. 2026-11-23T08:00:00+08:00") from None
    if start is not None and start.tzinfo is None:
        raise ConfigError("--start needs a time zone, e.g. 2026-11-23T08:00:00+08:00")
    if args.timezone:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(args.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError(f"--timezone {args.timezone!r}: not a time zone, e.g. Asia/Shanghai") from None
    if args.model:  # the option wins over $GRIDWATCH_MODEL, as it does for `gridwatch edge`
        import os

        os.environ.pop("GRIDWATCH_MODEL", None)
    if not args.manifest.is_file():
        raise ConfigError(f"--manifest {args.manifest}: no such manifest file")
    try:
        summary = scan(args.video, camera, args.out, args.evidence, model=args.model, manifest=args.manifest,
                       timezone=args.timezone, start=start, progress=not args.quiet)
    except ModelError as error:
        raise ConfigError(str(error)) from None
    print(f"{summary.frames_read} frames ({summary.video_seconds:.0f} s of video) in {summary.wall_seconds:.1f} s, "
          f"{summary.speed:.1f}x real time; {summary.frames_detected} detections")
    for (category, event_type), count in sorted(summary.events.items()):
        print(f"  {category:16} {event_type:7} {count}")
    print(f"events written to {args.out}" + (f", evidence to {args.evidence}" if args.evidence else ""))
    return 0


def cmd_server(args: argparse.Namespace) -> int:
    import uvicorn

    from server.core.config import load_server_settings
    from server.main import create_app

    warn_of_unknown_variables()
    settings = load_server_settings(args.config)
    if args.host:
        settings.api_host = args.host
    if args.port is not None:
        if not 1 <= args.port <= 65535:
            raise ConfigError(f"--port {args.port}: a port from 1 to 65535")
        settings.api_port = args.port
    if args.no_ingest:
        settings.ingest_enabled = False
    app = create_app(settings)

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: object) -> None:
            app.state.live.close()  # open consoles' streams end now, not when they time out
            super().handle_exit(sig, frame)

    log.info("API on http://%s:%d (OpenAPI at /docs)", settings.api_host, settings.api_port)
    # a request still running after SHUTDOWN_GRACE_SECONDS is cancelled, so that the ingest batch in hand is
    # finished and acknowledged (the lifespan's end) before a service manager's own stop timeout kills the process
    # log_config None: uvicorn's lines go through this process's handler, JSON too (`--log-format json`)
    Server(uvicorn.Config(app, host=settings.api_host, port=settings.api_port, log_level=args.log_level.lower(),
                          timeout_graceful_shutdown=SHUTDOWN_GRACE_SECONDS, log_config=None)).run()
    return 0


def cmd_server_token(args: argparse.Namespace) -> int:
    import yaml

    from server.core.security import TokenEntry, TokensFile, hash_token, new_token

    if args.role == "field_staff" and not args.unit:
        raise ConfigError("--unit: field staff need the unit they work for (a unit id in dispatch_config), whose "
                          "cases they act on")
    if args.unit and args.role != "field_staff":
        raise ConfigError(f"--unit: only field staff work for a unit; {args.role} acts on every unit's cases")
    token = new_token()
    entry = TokenEntry(name=args.name, role=args.role, unit=args.unit, sha256=hash_token(token))
    line = entry.model_dump(mode="json", exclude_none=True)
    if args.tokens_file:
        from gridwatch.config_files import load_yaml_model
        from gridwatch.durable import replace_durably

        new = not args.tokens_file.exists()
        existing = TokensFile() if new else load_yaml_model(args.tokens_file, TokensFile)
        existing.tokens.append(entry)
        text = yaml.safe_dump(existing.model_dump(mode="json", exclude_none=True), allow_unicode=True)
        try:  # whole or not at all: a server reading it half written would find no tokens
            replace_durably(args.tokens_file, text.encode(), make_folder=False)
        except PermissionError:  # a folder we may not write in (/etc/gridwatch), the file writable: in place
            try:
                args.tokens_file.write_text(text, encoding="utf-8")
            except OSError as error:
                raise ConfigError(f"--tokens-file {args.tokens_file}: {error.strerror or error}") from None
        except OSError as error:
            raise ConfigError(f"--tokens-file {args.tokens_file}: {error.strerror or error}") from None
        if new:  # a file made here is its owner's alone; one there already keeps the mode it was given (the
            args.tokens_file.chmod(0o600)  # server's group may read it)
        print(f"added {args.name} ({args.role}) to {args.tokens_file}; a running server reads it within 2 s, no "
              f"restart", file=sys.stderr)
    else:
        print("add to the tokens file under `tokens:`\n  - " + yaml.safe_dump(line, default_flow_style=True,
                                                                           allow_unicode=True).strip(),
              file=sys.stderr)
    print(token)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from gridwatch.demo import Demo

    return Demo(args.workdir, source=args.source, duration=args.duration, api_port=args.api_port,
                mqtt_port=args.mqtt_port, dwell_seconds=args.dwell).run(stop_on_signals())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gridwatch",
        description="GridWatch: street cameras detect problems at the edge, publish events over MQTT, and a server "
                    "turns them into cases dispatched to the people responsible.",
    )
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                        help="How much to log (default INFO).")
    parser.add_argument("--log-format", default="text", choices=["text", "json"],
                        help="text: for people (default); json: one JSON object a line, for log collectors.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                     help="What to run; `gridwatch COMMAND --help` explains its options.")

    edge = commands.add_parser("edge", help="Run an edge node: cameras, detection, zone rules, MQTT.",
                               description="Run an edge node from a node config (YAML; see README, Configuration).")
    edge.add_argument("--config", type=Path, help="Node config file (YAML); required unless scanning.")
    edge.add_argument("--source", help="Replace the video source of the config's single camera "
                                       "(file path, rtsp:// URL or USB index).")
    edge.add_argument("--model", help="Detector weights or export folder; overrides $GRIDWATCH_MODEL and the config.")
    edge.set_defaults(func=cmd_edge)
    edge_commands = edge.add_subparsers(dest="edge_command", metavar="ACTION",
                                        help="scan: run a camera's rules over a video file without a broker.")
    scan = edge_commands.add_parser(
        "scan", help="Run one camera's pipeline over a video file, writing events instead of publishing them.",
        description="Process VIDEO as fast as the machine allows, on video time (dwell in video seconds), with the "
                    "live node's code, and write the events it would publish as JSON lines (evidence to a folder).")
    scan.add_argument("video", type=Path, help="The video file to scan.")
    scan.add_argument("--camera", type=Path, required=True,
                      help="Camera config (YAML: camera_id, zones, ...); its source is replaced by VIDEO.")
    scan.add_argument("--out", type=Path, required=True, help="Where to write the events (JSON lines).")
    scan.add_argument("--evidence", type=Path, help="Folder for the evidence JPEGs (default: not written).")
    scan.add_argument("--model", help="Detector weights or export folder (default: $GRIDWATCH_MODEL, yolo11n.pt).")
    scan.add_argument("--manifest", type=Path, default=DEFAULT_MANIFEST_PATH,
                      help="Model manifest (default models/coco.yaml).")
    scan.add_argument("--timezone", help="IANA time zone for zone schedules (default: the system's).")
    scan.add_argument("--start", help="When the video's first frame was filmed, ISO 8601 with zone (default: now); "
                                      "zone schedules are judged on it.")
    scan.add_argument("--quiet", action="store_true", help="No progress bar.")
    scan.set_defaults(func=cmd_edge_scan)

    server = commands.add_parser("server", help="Run the API server and its MQTT ingest service.",
                                 description="Run the FastAPI server with MQTT ingest. Settings come from --config "
                                             "and GRIDWATCH_* environment variables (see README).")
    server.add_argument("--config", type=Path, help="Server settings file (YAML).")
    server.add_argument("--host", help="Address to listen on (overrides api_host).")
    server.add_argument("--port", type=int, help="Port to listen on (overrides api_port).")
    server.add_argument("--no-ingest", action="store_true", help="Serve the API only, without the MQTT ingest.")
    server.set_defaults(func=cmd_server)
    server_commands = server.add_subparsers(dest="server_command", metavar="ACTION",
                                            help="token: make an API token (without ACTION: run the server).")
    token = server_commands.add_parser(
        "token", help="Make an API token for a person or system and print it (once: only its hash is kept).",
        description="Print a new API token on stdout, and the tokens-file line (its SHA-256) on stderr or into "
                    "--tokens-file. Roles: operator (review, file, dispatch, verify, close, command nodes), "
                    "field_staff (accept, return, feedback), supervisor (assessment, extend, defer, close), "
                    "integrator (read; Open311 reports), admin (everything).")
    token.add_argument("name", help="Who holds it, recorded on everything they do, e.g. 'Zhang Min'.")
    token.add_argument("--role", required=True, choices=["operator", "field_staff", "supervisor", "integrator",
                                                         "admin"], help="What the holder may do.")
    token.add_argument("--unit", help="Field staff (required for them): the unit id (dispatch_config) whose cases "
                                      "they act on and whose pictures they see.")
    token.add_argument("--tokens-file", type=Path, help="Append the entry to this tokens file (created if missing).")
    token.set_defaults(func=cmd_server_token)

    add_broker_command(commands)
    add_models_command(commands)

    demo = commands.add_parser("demo", help="Run broker, server and an edge node together on a video.",
                               description="Start Mosquitto, the server and an edge node on a demo clip (or "
                                           "--source), print the API and broker addresses with credentials, and "
                                           "write them to WORKDIR/connection.json. A case appears within a minute.")
    demo.add_argument("--source", help="Video to watch instead of the rendered demo clip; the whole frame is then "
                                       "a no-parking zone.")
    demo.add_argument("--workdir", type=Path, default=Path(".demo"), help="Folder for the demo's state "
                                                                          "(default .demo, wiped at start).")
    demo.add_argument("--duration", type=float, default=0,
                      help="Stop after this many seconds (default 0: run until Ctrl-C).")
    demo.add_argument("--dwell", type=float, default=10.0,
                      help="Dwell time of the demo's no-parking zone in seconds (default 10).")
    demo.add_argument("--api-port", type=port_number, default=8000,
                      help="API port (default 8000); when it is taken, or 0, any free one (printed).")
    demo.add_argument("--mqtt-port", type=port_number, default=1883,
                      help="Broker port (default 1883); when it is taken, or 0, any free one (printed).")
    demo.set_defaults(func=cmd_demo)
    return parser


def _refused(problem: str, log_format: str) -> int:
    """What stopped the command, on stderr: one line, or one JSON object with `--log-format json`."""
    if log_format == "json":
        print(json.dumps({"level": "ERROR", "logger": "gridwatch", "message": problem}, ensure_ascii=False),
              file=sys.stderr)
    else:
        print(f"gridwatch: {problem}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level, args.log_format)
    try:
        return args.func(args)
    except (ConfigError, BrokerError) as error:
        return _refused(str(error), args.log_format)
    except ValidationError as error:  # a value given on the command line that a model refuses
        return _refused("; ".join(f"{'.'.join(map(str, e['loc'])) or 'value'}: {e['msg']}" for e in error.errors()),
                        args.log_format)
    except OSError as error:  # a file or folder named on the command line that cannot be read or written
        return _refused(f"{error.filename or ''}{': ' if error.filename else ''}{error.strerror or error}",
                        args.log_format)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
