"""Validating custom resources (Istio, KEDA) against their CustomResourceDefinitions.

The CRDs are the real, generated files in `../shared/data/crds/` beside the checkout
(its README says where each comes from). Each CRD version's `openAPIV3Schema` becomes a
JSON Schema, with the Kubernetes extensions translated as the API server reads them:

- `x-kubernetes-int-or-string: true`: an integer or a string;
- `nullable: true`: null is allowed too;
- an object schema with `properties` refuses fields it does not list, unless it says
  `x-kubernetes-preserve-unknown-fields: true` (what `kubectl apply`'s default strict field
  validation does; the server would otherwise prune them silently);
- `x-kubernetes-validations` (CEL rules) cannot be evaluated here and are not checked;
- apiVersion, kind and metadata are allowed at the root even where a CRD does not list them.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from .manifests import ROOT

CRD_DIR = ROOT.parent / "shared" / "data" / "crds"

Schema = dict[str, Any]
_COMBINATORS = ("allOf", "anyOf", "oneOf")


def crd_dir() -> Path:
    if not CRD_DIR.is_dir():
        pytest.skip(f"the CRD schemas are not here: {CRD_DIR.name} beside the checkout is absent")
    return CRD_DIR


def to_json_schema(node: Mapping[str, Any], *, structural: bool = True) -> Schema:
    """One OpenAPI v3 (Kubernetes structural) schema node as JSON Schema.

    `structural` is false inside allOf/anyOf/oneOf/not, whose branches only add
    constraints (usually `required`) and must not close the object a second time."""
    out: Schema = {}
    for key, value in node.items():
        if key == "properties":
            out[key] = {name: to_json_schema(sub) for name, sub in value.items()}
        elif key in ("items", "additionalProperties") and isinstance(value, Mapping):
            out[key] = to_json_schema(value)
        elif key in _COMBINATORS:
            out[key] = [to_json_schema(sub, structural=False) for sub in value]
        elif key == "not":
            out[key] = to_json_schema(value, structural=False)
        elif key.startswith("x-kubernetes-") or key == "nullable":
            continue
        else:
            out[key] = value
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out.setdefault("anyOf", []).extend([{"type": "integer"}, {"type": "string"}])
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    closed = (
        structural
        and "properties" in node
        and "additionalProperties" not in node
        and not node.get("x-kubernetes-preserve-unknown-fields")
    )
    if closed:
        out["additionalProperties"] = False
    return out


@functools.cache
def schemas() -> dict[tuple[str, str], Schema]:
    """(apiVersion, kind) → JSON Schema, for every served version of every CRD."""
    found: dict[tuple[str, str], Schema] = {}
    for path in sorted(crd_dir().glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            group, kind = doc["spec"]["group"], doc["spec"]["names"]["kind"]
            for version in doc["spec"]["versions"]:
                schema = version.get("schema", {}).get("openAPIV3Schema")
                if schema is not None and version.get("served", True):
                    found[(f"{group}/{version['name']}", kind)] = _root(to_json_schema(schema))
    return found


def _root(schema: Schema) -> Schema:
    """Every object has apiVersion, kind and metadata, whether its CRD lists them or not
    (Istio's do not); the API server checks them itself."""
    properties = schema.setdefault("properties", {})
    properties.setdefault("apiVersion", {"type": "string"})
    properties.setdefault("kind", {"type": "string"})
    properties.setdefault("metadata", {"type": "object"})
    return schema


def is_custom(obj: Mapping[str, Any]) -> bool:
    """A kind served by a CRD we hold (Istio, KEDA), not a core Kubernetes kind."""
    group = str(obj["apiVersion"]).rpartition("/")[0]
    return group.endswith(("istio.io", "keda.sh"))


def validate(obj: Mapping[str, Any]) -> None:
    """Raises jsonschema.ValidationError if `obj` breaks its CRD's schema, KeyError if no
    CRD here serves its apiVersion and kind (an unknown kind must not pass unseen)."""
    key = (str(obj["apiVersion"]), str(obj["kind"]))
    schema = schemas().get(key)
    if schema is None:
        raise KeyError(f"no CRD in {CRD_DIR.name} serves {key[0]} {key[1]}")
    jsonschema.Draft4Validator(schema).validate(obj)
