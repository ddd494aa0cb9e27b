"""The OpenAPI 3.1 document, generated from the app's URL map and the models of api/schemas.py.

Each view declares its operation with :func:`operation` (summary, query model, body models,
responses); :func:`spec` walks the real routes and turns those models into JSON Schema with
pydantic (``models_json_schema``). OpenAPI 3.1 takes JSON Schema 2020-12 as it is, so what
pydantic emits (``const``, ``anyOf`` with ``null``) needs no translation.

Why not spectree or flask-openapi3: both validate requests themselves and answer their own
422 bodies, while this API keeps its stable 400 codes (MALFORMED_BODY, INVALID_REPEATS,
UNKNOWN_FIELD...) and one error shape; bending them to that costs more than this module, and
neither handles the four body shapes of POST /predict (JSON, multipart, raw audio) any better.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from flask import Flask
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

import ser
from api import schemas as S

REF = "#/components/schemas/{model}"
BINARY = {"type": "string", "format": "binary"}
LOCATION = {"Location": {"description": "the job URL", "schema": {"type": "string"}}}
AUTH_ERROR = "missing or wrong API key"

# Path parameters, by the name of the URL rule's variable.
PATH_PARAMS: dict[str, dict] = {
    "job_id": {"type": "string", "description": "32 hexadecimal digits"},
    "version": {"type": "string", "pattern": S.C.MODEL_VERSION_PATTERN},
    "speaker": {
        "type": "string",
        "minLength": 1,
        "maxLength": S.MAX_SPEAKER_LEN,
        "description": "a speaker id: printable text without control characters or '/'",
    },
}

Content = type[BaseModel] | Mapping[str, type[BaseModel] | dict]
Answer = str | tuple[Content, str] | tuple[Content, str, dict]


@dataclass
class Operation:
    """One method of one route, as the document states it."""

    summary: str
    responses: Mapping[int, Answer]
    query: type[BaseModel] | None = None
    body: Mapping[str, type[BaseModel] | dict] = field(default_factory=dict)
    body_required: bool = True
    body_description: str | None = None
    public: bool = False  # open without the API key (middleware.PUBLIC names the endpoints)


def operation(method: str, summary: str, **kwargs: Any) -> Callable:
    """Declare ``method`` of the decorated view (a view serving two methods takes two)."""

    def mark(view: Callable) -> Callable:
        ops = view.__dict__.setdefault("openapi", {})
        ops[method.lower()] = Operation(summary, **kwargs)
        return view

    return mark


def either(*models: type[BaseModel]) -> dict:
    """The JSON content of an answer that is any of ``models`` (each declared elsewhere too)."""
    return {"application/json": {"anyOf": [_schema(m) for m in models]}}


def _models(app: Flask) -> list[type[BaseModel]]:
    found: dict[str, type[BaseModel]] = {"Error": S.Error}
    for view in app.view_functions.values():
        for op in getattr(view, "openapi", {}).values():
            for m in (op.query, *op.body.values(), *(_contents(a) for a in op.responses.values())):
                for model in m.values() if isinstance(m, Mapping) else (m,):
                    if isinstance(model, type) and issubclass(model, BaseModel):
                        found[model.__name__] = model
    return list(found.values())


def _contents(answer: Answer) -> Content | None:
    return None if isinstance(answer, str) else answer[0]


def _schema(model: type[BaseModel] | dict) -> dict:
    return model if isinstance(model, dict) else {"$ref": REF.format(model=model.__name__)}


def _content(content: Content) -> dict:
    if isinstance(content, Mapping):
        return {ctype: {"schema": _schema(m)} for ctype, m in content.items()}
    return {"application/json": {"schema": _schema(content)}}


def _response(answer: Answer) -> dict:
    if isinstance(answer, str):
        return {"description": answer, "content": _content(S.Error)}
    out = {"description": answer[1], "content": _content(answer[0])}
    if len(answer) > 2:
        out["headers"] = answer[2]
    return out


def _query_params(model: type[BaseModel], components: dict) -> list[dict]:
    schema = components[model.__name__]
    required = set(schema.get("required", ()))
    params = []
    for name, prop in schema["properties"].items():
        prop = {k: v for k, v in prop.items() if k != "title"}
        param = {"name": name, "in": "query", "required": name in required, "schema": prop}
        if "description" in prop:
            param["description"] = prop.pop("description")
        params.append(param)
    return params


def _operation(op: Operation, operation_id: str, components: dict, params: list[dict]) -> dict:
    out: dict = {"summary": op.summary, "operationId": operation_id}
    query = _query_params(op.query, components) if op.query else []
    if params or query:
        out["parameters"] = params + query
    if op.body:
        out["requestBody"] = {"required": op.body_required, "content": _content(op.body)}
        if op.body_description:
            out["requestBody"]["description"] = op.body_description
    responses = {str(status): _response(a) for status, a in sorted(op.responses.items())}
    if op.public:
        out["security"] = []
    else:
        responses.setdefault("401", _response(AUTH_ERROR))
    if op.body:
        responses.setdefault("413", _response("the body exceeds SER_MAX_UPLOAD_MB"))
    responses.setdefault("503", _response("Redis (the broker and job store) is unreachable"))
    out["responses"] = dict(sorted(responses.items()))
    return out


def _referenced(paths: dict, components: dict) -> set[str]:
    """The component names some ``$ref`` of the paths or the components points at."""
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str):
                found.add(ref.rsplit("/", 1)[-1])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(paths)
    walk(components)
    return found


def spec(app: Flask, with_auth: bool = False) -> dict:
    """The OpenAPI document of ``app``; ``with_auth`` declares the bearer scheme on every
    operation but the public ones."""
    models = _models(app)
    _, defs = models_json_schema([(m, "validation") for m in models], ref_template=REF)
    components: dict = defs.get("$defs", {})
    paths: dict = {}
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        ops = getattr(app.view_functions[rule.endpoint], "openapi", None)
        if not ops:
            continue
        path = rule.rule.replace("<", "{").replace(">", "}")
        params = [
            {"name": arg, "in": "path", "required": True, "schema": PATH_PARAMS[arg]}
            for arg in sorted(rule.arguments)
        ]
        for method in sorted(m.lower() for m in rule.methods - {"HEAD", "OPTIONS"}):
            op_id = rule.endpoint.rsplit(".", 1)[-1]
            if len(ops) > 1:
                op_id += method.title()
            paths.setdefault(path, {})[method] = _operation(ops[method], op_id, components, params)
    for model in models:  # a model only ever read as a query string is its parameters
        if model.__name__ not in _referenced(paths, components):
            components.pop(model.__name__)
    doc: dict = {
        "openapi": "3.1.0",
        "info": {
            "title": "Speech emotion recognition service",
            "version": ser.__version__,
            "description": "Train and predict as jobs; poll /jobs/{id} (or use ?wait).",
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
    if with_auth:
        doc["security"] = [{"bearer": []}]
    return doc
