"""README.md and docs/ describe what the code does; these fail when they fall behind."""

from __future__ import annotations

from pathlib import Path

from gridwatch.config_reference import with_reference

REPO = Path(__file__).resolve().parents[1]


def test_readme_configuration_reference_is_current():
    readme = (REPO / "README.md").read_text()
    assert readme == with_reference(readme), "run: python -m gridwatch.config_reference README.md"


def test_every_configuration_key_is_explained():
    from edge.config import CameraConfig, MqttConfig, NodeConfig, RuleTuning, ZoneConfig
    from edge.health_config import HealthConfig
    from edge.manifest import Manifest, ManifestModel
    from edge.schedule import TimeWindow
    from server.core.config import ServerSettings
    from server.services.dispatch import CategoryRoute, DispatchConfig, UnitConfig

    for model in (NodeConfig, MqttConfig, CameraConfig, ZoneConfig, RuleTuning, ServerSettings, DispatchConfig,
                  UnitConfig, CategoryRoute, TimeWindow, Manifest, ManifestModel, HealthConfig):
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name} has no description"


def test_readme_quick_start_is_two_commands_that_exist_in_the_makefile():
    readme = (REPO / "README.md").read_text()
    makefile = (REPO / "Makefile").read_text()
    assert "make demo" in readme and "make test" in readme
    assert "\ndemo:" in makefile and "\ntest:" in makefile


def test_service_units_run_commands_that_exist():
    import shlex

    from gridwatch.cli import build_parser

    for unit in sorted((REPO / "deploy").glob("gridwatch-*.service")):
        exec_start = next(line for line in unit.read_text().splitlines() if line.startswith("ExecStart="))
        argv = shlex.split(exec_start.removeprefix("ExecStart="))
        if not argv[0].endswith("/gridwatch"):
            continue  # the broker unit runs mosquitto itself
        args = build_parser().parse_args([a if not a.startswith("${") else "/etc/gridwatch/node.yaml"
                                          for a in argv[1:]])
        assert args.func.__name__ in {"cmd_edge", "cmd_server"}, unit.name


def test_the_service_examples_are_configurations_the_programs_take():
    """deploy/'s units read /etc/gridwatch/server.yaml and node.yaml: the examples given for them validate (found
    by review: the units named files the repository did not have)."""
    import yaml

    from edge.config import NodeConfig
    from server.core.config import ServerSettings

    server = ServerSettings.model_validate(yaml.safe_load((REPO / "deploy" / "server.yaml").read_text()))
    node = NodeConfig.model_validate(yaml.safe_load((REPO / "deploy" / "node.yaml").read_text()))
    assert server.evidence_dir.is_absolute() and server.database_url.startswith("sqlite:////var/lib/gridwatch/")
    assert node.state_dir.is_absolute() and [zone.rule for zone in node.cameras[0].zones] == ["no_parking",
                                                                                               "no_litter"]
