"""Builds `docs/asyncapi.yaml` (AsyncAPI 3.0, MQTT bindings) from the contract, so the document cannot drift.

Regenerate with `python -m gridwatch.asyncapi > docs/asyncapi.yaml`; a test fails when the two differ.
"""

from __future__ import annotations

import sys
from typing import Any

import yaml
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from gridwatch import contract as c
from gridwatch.contract import SCHEMA_VERSION

_MQTT_BINDING = "0.2.0"
_NODE_PARAM = {"node_id": {"description": "The node's id, which is also its broker user name "
                                          f"(pattern `{c.NODE_ID_PATTERN}`)."}}

# (channel key, address, parameters, message name, payload model or None for JPEG, sender, qos, retain, summary)
_CHANNELS: list[tuple[str, str, dict, str, type[BaseModel] | None, str, int, bool, str]] = [
    ("nodeStatus", c.status_topic("{node_id}"), _NODE_PARAM, "NodeStatus", c.NodeStatus, "edge node", 1, True,
     "Availability. Birth `online` on every (re)connection and last will `offline`, both with a session number "
     "that grows with every connection: ignore an `offline` whose session is lower than the last `online`."),
    ("nodeTelemetry", c.telemetry_topic("{node_id}"), _NODE_PARAM, "NodeTelemetry", c.NodeTelemetry, "edge node", 0,
     False, "Periodic node health: frames read and detected per camera, publishes pending, uptime."),
    ("nodeEvents", "gw/v1/nodes/{node_id}/events/{category}",
     {**_NODE_PARAM, "category": {"description": "Event category.", "enum": [x.value for x in c.Category]}},
     "Event", c.Event, "edge node", 2, False,
     "Detection events, at QoS 2 from the node's outbox (its `mqtt.qos`; 1 allowed, a repeat then deduplicated). "
     "`new` when a rule fires, `update` on a real change or a heartbeat, `end` when the object leaves; one "
     "`violation_id` for all three. `event_id` is unique per message: deduplicate on it."),
    ("nodeEvidence", "gw/v1/nodes/{node_id}/evidence/{event_id}",
     {**_NODE_PARAM, "event_id": {"description": "The `event_id` of the event this image belongs to."}},
     "Evidence", None, "edge node", 2, False,
     "The annotated JPEG (box, zone outline, label, time) announced by the event's `evidence` field; binary."),
    ("nodeEvidenceCrop", "gw/v1/nodes/{node_id}/evidence/{event_id}/crop",
     {**_NODE_PARAM, "event_id": {"description": "The `event_id` of the event this image belongs to."}},
     "EvidenceCrop", None, "edge node", 2, False,
     "A full-resolution crop of the object, unannotated (a plate stays readable), announced by `evidence.crop`."),
    ("nodeConfig", c.config_topic("{node_id}"), _NODE_PARAM, "RemoteConfig", c.RemoteConfig, "server", 1, True,
     "Retained remote configuration: per camera, the zones, schedules, rates, tuning and health checks to change. "
     "The node validates it all before applying any of it, keeps the last good one, and answers on config/status."),
    ("nodeConfigStatus", c.config_status_topic("{node_id}"), _NODE_PARAM, "ConfigStatus", c.ConfigStatus,
     "edge node", 1, True, "The node's answer to a remote config: applied, or refused with the reason naming keys."),
    ("nodeCommand", c.command_topic("{node_id}"), _NODE_PARAM, "Command", c.Command, "server", 1, False,
     "A command: snapshot (publish the current frame), reload (re-read the node's config file and manifest), "
     "restart_camera (reopen a camera's source). Sent while the node is away, it arrives on return (persistent "
     "session). Answered on command/response with the same request_id (1.2). The node acknowledges it once its "
     "answer is kept, and carries out a request_id once: delivered again, it is answered again (the node keeps its "
     "last 500 answers)."),
    ("nodeCommandResponse", c.command_response_topic("{node_id}"), _NODE_PARAM, "CommandResponse",
     c.CommandResponse, "edge node", 2, False,
     "The answer to a command, through the node's outbox at its `mqtt.qos` (1 allowed): ok or not, what was done or "
     "why not, and the snapshots published (1.2). The same answer may come twice for a command delivered again."),
    ("nodeSnapshot", "gw/v1/nodes/{node_id}/snapshot/{camera_id}",
     {**_NODE_PARAM, "camera_id": {"description": "The camera."}}, "Snapshot", None, "edge node", 1, True,
     "The camera's latest frame as a JPEG, unannotated, retained; published on a snapshot command (1.2)."),
    ("cases", "gw/v1/cases/{category}/{case_id}",
     {"category": {"description": "Case category.", "enum": [x.value for x in c.Category]},
      "case_id": {"description": "The server's case number."}},
     "CaseMessage", c.CaseMessage, "server", 1, False,
     "Every case state change, with who changed it, when and why, and the assignment once dispatched. Stored "
     "with the change and sent until the broker has it: at least once, a case's changes in their order. `seq` "
     "(1.6) numbers a case's changes: skip a message whose `seq` you handled already, and of two, keep the higher."),
]


def _schemas() -> dict[str, Any]:
    models = [channel[4] for channel in _CHANNELS if channel[4] is not None]
    _, top = models_json_schema([(model, "validation") for model in models],
                                ref_template="#/components/schemas/{model}")
    return dict(sorted(top["$defs"].items()))


def build() -> dict[str, Any]:
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for key, address, params, message, model, sender, qos, retain, summary in _CHANNELS:
        channels[key] = {
            "address": address,
            "description": summary,
            "parameters": params,
            "messages": {message: {"$ref": f"#/components/messages/{message}"}},
        }
        if model is not None:
            payload: dict[str, Any] = {"$ref": f"#/components/schemas/{model.__name__}"}
            content_type = "application/json"
        elif message in ("Evidence", "EvidenceCrop", "Snapshot"):  # JPEGs, as they are
            payload, content_type = {"type": "string", "format": "binary",
                                     "maxLength": c.MAX_EVIDENCE_BYTES}, "image/jpeg"
        else:
            payload, content_type = {"type": "object"}, "application/json"
        messages[message] = {"name": message, "contentType": content_type, "payload": payload}
        operations[f"send{key[0].upper()}{key[1:]}"] = {
            "action": "send",
            "summary": f"Sent by the {sender}.",
            "channel": {"$ref": f"#/channels/{key}"},
            "messages": [{"$ref": f"#/channels/{key}/messages/{message}"}],
            "bindings": {"mqtt": {"qos": qos, "retain": retain, "bindingVersion": _MQTT_BINDING}},
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "GridWatch MQTT contract",
            "version": SCHEMA_VERSION,
            "description": (
                "Topics and payloads shared by GridWatch edge nodes, the server and integrators. Generated from "
                "`gridwatch/contract/`. Every account logs in; nodes write only below their own "
                "`gw/v1/nodes/{node_id}/`, integrators read cases, events and status and write nothing."
            ),
        },
        "defaultContentType": "application/json",
        "servers": {
            "broker": {
                "host": "localhost:1883",
                "protocol": "mqtt",
                "protocolVersion": "5.0",
                "description": "Mosquitto configured by broker_config/ (persistence on, no anonymous access).",
                "security": [{"$ref": "#/components/securitySchemes/userPassword"}],
                "bindings": {"mqtt": {
                    "clientId": "the node id (edge nodes)",
                    "cleanSession": False,
                    "keepAlive": 30,
                    "sessionExpiryInterval": 7 * 24 * 3600,
                    "lastWill": {"topic": c.status_topic("{node_id}"), "qos": 1, "retain": True,
                                 "message": '{"node_id": "...", "state": "offline", "session": N}'},
                    "maximumPacketSize": c.MAX_EVIDENCE_BYTES,
                    "bindingVersion": _MQTT_BINDING,
                }},
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {
            "messages": messages,
            "schemas": _schemas(),
            "securitySchemes": {"userPassword": {"type": "userPassword",
                                                 "description": "Accounts made by `gridwatch broker users`."}},
        },
    }


class _PlainDumper(yaml.SafeDumper):
    def ignore_aliases(self, _data: Any) -> bool:  # repeated parts are written out, not as &anchors
        return True


def render() -> str:
    header = "# Generated by `python -m gridwatch.asyncapi` from gridwatch/contract/; do not edit by hand.\n"
    return header + yaml.dump(build(), Dumper=_PlainDumper, sort_keys=False, allow_unicode=True, width=120)


if __name__ == "__main__":
    sys.stdout.write(render())
