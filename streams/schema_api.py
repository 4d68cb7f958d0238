"""The embedded registry, served read-only under the Confluent Schema Registry REST paths.

Standard serializers (confluent-kafka's `AvroSerializer` and `AvroDeserializer`,
the Java `KafkaAvroSerializer`) ask a registry for ids and schemas over HTTP.
This module answers the calls they make, from the embedded registry
(`schemas/registry.json`, ids pinned), so a bank or a messaging team can use
them unchanged against `passerelle schemas serve` or a worker's web port:

    GET  /subjects                              subjects
    GET  /subjects/{subject}/versions           version numbers
    GET  /subjects/{subject}/versions/{v}       one version (`latest` too)
    POST /subjects/{subject}                    lookup: is this schema registered?
    POST /subjects/{subject}/versions           register: only a schema already
                                                registered (its id); anything new
                                                is refused, the registry is read-only
    GET  /schemas/ids/{id}                      the schema of an id
    GET  /config/{subject}                      compatibility (transitive)
    GET  /mode                                  READONLY

Subjects are the record names (`passerelle.Transaction`: RecordNameStrategy).
The serializers' default, TopicNameStrategy, names `<topic>-value`: for the
topics that carry one record type it is answered as that record's subject
(`bank.<id>.transactions.v1-value` is `passerelle.Transaction`, likewise
`consents.v1-value` and `messenger.notifications.v1-value`). The audit topic
carries two record types: read it with RecordNameStrategy.

A schema matches a registered one when their Avro Parsing Canonical Forms are
equal (names, types, fields and symbols; docs and defaults aside).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import fastavro
from aiohttp import web

from streams import catalog, model
from streams.codec import EmbeddedRegistry, SchemaVersion
from streams.errors import UnknownSchemaIdError

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
Handler = Callable[[web.Request], Awaitable[web.Response]]

TOPIC_SUBJECTS = {catalog.CONSENTS: model.CONSENT, catalog.NOTIFICATIONS: model.NOTIFICATION}


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any


def _error(status: int, code: int, message: str) -> Answer:
    return Answer(status, {"error_code": code, "message": message})


class SchemaApi:
    """The answers to the registry calls, over one embedded registry."""

    def __init__(self, registry: EmbeddedRegistry) -> None:
        self.registry = registry
        self._canonical = {
            v.id: fastavro.schema.to_parsing_canonical_form(dict(v.definition))
            for s in registry.subjects()
            for v in registry.versions(s)
        }

    def subject(self, name: str) -> str | None:
        """The record subject a requested subject names, or None."""
        if name in self.registry.subjects():
            return name
        if not name.endswith("-value"):
            return None
        topic = name.removesuffix("-value")
        if catalog.bank_of_topic(topic) is not None:
            return model.TRANSACTION
        return TOPIC_SUBJECTS.get(topic)

    def subjects(self) -> Answer:
        return Answer(200, self.registry.subjects())

    def versions(self, name: str) -> Answer:
        subject = self.subject(name)
        if subject is None:
            return _no_subject(name)
        return Answer(200, [v.version for v in self.registry.versions(subject)])

    def version(self, name: str, version: str) -> Answer:
        subject = self.subject(name)
        if subject is None:
            return _no_subject(name)
        versions = self.registry.versions(subject)
        if version in ("latest", "-1"):
            return Answer(200, _described(name, versions[-1]))
        found = next((v for v in versions if str(v.version) == version), None)
        if found is None:
            return _error(404, 40402, f"Version {version} not found.")
        return Answer(200, _described(name, found))

    def by_id(self, schema_id: str) -> Answer:
        try:
            found = self.registry.by_id(int(schema_id))
        except (ValueError, UnknownSchemaIdError):
            return _error(404, 40403, f"Schema {schema_id} not found")
        return Answer(200, {"schema": json.dumps(found.definition)})

    def lookup(self, name: str, body: Mapping[str, Any], registering: bool) -> Answer:
        """The registered version of `name` this schema is; registering answers only its
        id, and anything not registered is refused (read-only)."""
        subject = self.subject(name)
        if subject is None:
            if registering:
                return _read_only(name)
            return _no_subject(name)
        if body.get("schemaType", "AVRO") != "AVRO":
            return _error(422, 42201, "Only AVRO schemas are served here.")
        try:
            canonical = fastavro.schema.to_parsing_canonical_form(json.loads(body["schema"]))
        except Exception as exc:  # a schema that does not parse, whatever raised
            return _error(422, 42201, f"Invalid schema: {exc}")
        found = next(
            (v for v in self.registry.versions(subject) if self._canonical[v.id] == canonical),
            None,
        )
        if found is None:
            return _read_only(name) if registering else _error(404, 40403, "Schema not found")
        return Answer(200, {"id": found.id} if registering else _described(name, found))

    def config(self, name: str) -> Answer:
        """The subject's compatibility: transitive, as `passerelle schemas check` checks
        every version against every one before it."""
        subject = self.subject(name)
        if subject is None:
            return _no_subject(name)
        mode = self.registry.compatibility(subject)
        return Answer(200, {"compatibilityLevel": f"{mode}_TRANSITIVE"})


def _described(name: str, version: SchemaVersion) -> dict[str, Any]:
    return {
        "subject": name,
        "version": version.version,
        "id": version.id,
        "schema": json.dumps(version.definition),
    }


def _no_subject(name: str) -> Answer:
    return _error(404, 40401, f"Subject '{name}' not found.")


def _read_only(name: str) -> Answer:
    return _error(
        422,
        42205,
        f"Subject '{name}' is in read-only mode: this registry serves the contract's "
        "pinned schemas (schemas/registry.json) and registers nothing new.",
    )


def routes(api: SchemaApi) -> list[web.RouteDef]:
    """The aiohttp routes that answer the registry calls."""

    def reply(answer: Answer) -> web.Response:
        return web.Response(
            status=answer.status, text=json.dumps(answer.body), content_type=CONTENT_TYPE
        )

    async def post(request: web.Request, registering: bool) -> web.Response:
        try:
            body = json.loads(await request.text())
        except ValueError:
            return reply(_error(400, 400, "The body is not JSON."))
        return reply(api.lookup(request.match_info["subject"], body, registering))

    async def lookup(request: web.Request) -> web.Response:
        return await post(request, registering=False)

    async def register(request: web.Request) -> web.Response:
        return await post(request, registering=True)

    def get(answer: Callable[[Mapping[str, str]], Answer]) -> Handler:
        async def handler(request: web.Request) -> web.Response:
            return reply(answer(request.match_info))

        return handler

    return [
        web.get("/subjects", get(lambda _: api.subjects())),
        web.get("/subjects/{subject}/versions", get(lambda p: api.versions(p["subject"]))),
        web.get(
            "/subjects/{subject}/versions/{version}",
            get(lambda p: api.version(p["subject"], p["version"])),
        ),
        web.post("/subjects/{subject}", lookup),
        web.post("/subjects/{subject}/versions", register),
        web.get("/schemas/ids/{id}", get(lambda p: api.by_id(p["id"]))),
        web.get("/config/{subject}", get(lambda p: api.config(p["subject"]))),
        web.get("/mode", get(lambda _: Answer(200, {"mode": "READONLY"}))),
    ]
