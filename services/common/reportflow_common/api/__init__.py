"""The OpenAPI description of the auth and reports APIs: one YAML source, served as JSON by reports."""
from __future__ import annotations

import functools
import os

from flask import Blueprint, jsonify

SPEC_PATH = os.path.join(os.path.dirname(__file__), "openapi.yaml")


@functools.cache
def openapi_document() -> dict:
    import yaml
    with open(SPEC_PATH, encoding="utf-8") as f:
        return yaml.safe_load(f)


def openapi_blueprint() -> Blueprint:
    bp = Blueprint("openapi", __name__)

    @bp.get("/v1/openapi.json")
    def openapi_json():
        resp = jsonify(openapi_document())
        resp.headers["Cache-Control"] = "public, max-age=300"
        return resp

    return bp
