"""Models of what Istio and Envoy do with mesh/istio, small enough to check by hand.

- RE2 semantics in Python's `re` for the patterns the meshes use (Envoy matches and rewrites
  with RE2);
- route selection (first match wins) for the local Envoy's route table and for a
  VirtualService, so the two front doors can be compared path by path;
- the hash key each route ends up with in Istio (DestinationRule, subset, EnvoyFilter patch);
- ALLOW-only AuthorizationPolicy evaluation, for the fields mesh/istio uses; any other field
  raises, so a policy cannot grow a condition these tests silently ignore.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .manifests import Manifest

HashKey = tuple[str, ...]


def re2(pattern: str) -> re.Pattern[str]:
    """`pattern` compiled by Python with the meaning RE2 gives it.

    Only the common subset is accepted: no lookaround, no backreferences and no shorthand
    classes (Python's are Unicode-aware, RE2's ASCII). RE2's `$` without the multi-line flag
    matches only at the very end, where Python's also matches before a final newline: it
    becomes `\\Z`."""
    if "(?" in pattern or re.search(r"\\[1-9dDwWsSbB]", pattern):
        raise ValueError(f"pattern outside the RE2/Python common subset: {pattern!r}")
    out, in_class, escaped = [], False, False
    for char in pattern:
        if escaped:
            out.append(char)
            escaped = False
        elif char == "\\":
            out.append(char)
            escaped = True
        elif char == "[":
            in_class = True
            out.append(char)
        elif char == "]":
            in_class = False
            out.append(char)
        elif char == "$" and not in_class:
            out.append(r"\Z")
        else:
            out.append(char)
    return re.compile("".join(out))


def rewrite(pattern: str, substitution: str, value: str) -> str:
    """Envoy's regex_rewrite (RE2::GlobalReplace): every match replaced, `\\1` a group."""
    return re2(pattern).sub(substitution, value)


def without_query(path: str) -> str:
    return path.split("?", 1)[0]


# The local Envoy's route table.


def envoy_route(routes: Sequence[Mapping[str, Any]], path: str) -> Mapping[str, Any]:
    """The first route of an Envoy route list that matches `path` (query ignored)."""
    bare = without_query(path)
    for route in routes:
        match = route["match"]
        if "safe_regex" in match:
            hit = re2(match["safe_regex"]["regex"]).fullmatch(bare) is not None
        elif "prefix" in match:
            hit = bare.startswith(match["prefix"])
        elif "path" in match:
            hit = bare == match["path"]
        else:
            raise ValueError(f"route match not modelled: {match}")
        if hit:
            return route
    raise LookupError(f"no route for {path}")


def envoy_hash(route: Mapping[str, Any]) -> HashKey:
    """The hash keys of a local Envoy route, in a form shared with `istio_hash`."""
    keys: list[str] = []
    for policy in route.get("route", {}).get("hash_policy", []):
        keys.extend(_envoy_hash_policy(policy))
    return tuple(keys)


def _envoy_hash_policy(policy: Mapping[str, Any]) -> list[str]:
    header = policy["header"]
    rewrite_ = header.get("regex_rewrite")
    if rewrite_ is None:
        return [f"header:{header['header_name']}"]
    pattern, substitution = rewrite_["pattern"]["regex"], rewrite_["substitution"]
    return [f"rewrite:{header['header_name']}:{pattern}:{substitution}"]


# Istio.


def istio_route(virtual_service: Manifest, path: str) -> Mapping[str, Any]:
    """The first http route of a VirtualService that matches `path` (query ignored)."""
    bare = without_query(path)
    routes: list[Mapping[str, Any]] = virtual_service["spec"]["http"]
    for route in routes:
        matches = route.get("match")
        if not matches or any(_uri_matches(m, bare) for m in matches):
            return route
    raise LookupError(f"no route for {path}")


def _uri_matches(match: Mapping[str, Any], path: str) -> bool:
    if set(match) != {"uri"}:
        raise ValueError(f"match not modelled: {match}")
    uri = match["uri"]
    if "exact" in uri:
        return bool(path == uri["exact"])
    if "prefix" in uri:
        return path.startswith(uri["prefix"])
    if "regex" in uri:
        return re2(uri["regex"]).fullmatch(path) is not None
    raise ValueError(f"uri match not modelled: {uri}")


def consistent_hash(rule: Manifest, subset: str | None) -> Mapping[str, Any] | None:
    """The consistentHash a destination gets: the subset's if it has one, else the rule's."""
    policy = rule["spec"].get("trafficPolicy", {})
    top: Mapping[str, Any] | None = policy.get("loadBalancer", {}).get("consistentHash")
    for each in rule["spec"].get("subsets", []):
        if each["name"] == subset:
            own: Mapping[str, Any] | None = (
                each.get("trafficPolicy", {}).get("loadBalancer", {}).get("consistentHash")
            )
            return own if own is not None else top
    if subset is not None:
        raise LookupError(f"no subset {subset!r} in DestinationRule {rule['metadata']['name']}")
    return top


def _dr_hash_key(ch: Mapping[str, Any] | None) -> list[str]:
    if ch is None:
        return []
    if "httpHeaderName" in ch:
        return [f"header:{ch['httpHeaderName']}"]
    if {"httpCookie", "useSourceIp", "httpQueryParameterName"} & set(ch):
        raise ValueError(f"hash key not modelled: {ch}")
    return []  # a ring with no key of its own


def route_patches(envoy_filters: Iterable[Manifest], route_name: str) -> list[Mapping[str, Any]]:
    """The MERGE values every EnvoyFilter applies to the gateway route named `route_name`."""
    found = []
    for envoy_filter in envoy_filters:
        for patch in envoy_filter["spec"]["configPatches"]:
            match = patch["match"]
            route = match.get("routeConfiguration", {}).get("vhost", {}).get("route", {})
            if patch["applyTo"] == "HTTP_ROUTE" and route.get("name") == route_name:
                if match.get("context") != "GATEWAY" or patch["patch"]["operation"] != "MERGE":
                    raise ValueError(f"patch not modelled: {patch}")
                found.append(patch["patch"]["value"])
    return found


def istio_hash(
    route: Mapping[str, Any], rules: Mapping[str, Manifest], envoy_filters: Iterable[Manifest]
) -> HashKey:
    """The hash keys Istio gives a gateway route: its destination's consistentHash key first
    (that is how Istio builds the route), then any an EnvoyFilter MERGE appends."""
    keys: list[str] = []
    if "route" in route:
        (destination,) = route["route"]
        dest = destination["destination"]
        keys.extend(_dr_hash_key(consistent_hash(rules[dest["host"]], dest.get("subset"))))
    for value in route_patches(envoy_filters, route["name"]):
        for policy in value.get("route", {}).get("hash_policy", []):
            keys.extend(_envoy_hash_policy(policy))
    return tuple(keys)


# AuthorizationPolicy.


@dataclass(frozen=True)
class Request:
    principal: str | None  # None: no mTLS identity (plaintext, or outside the mesh)
    port: int
    path: str | None = None  # None for TCP
    method: str | None = None


def allowed(policies: Iterable[Manifest], pod_labels: Mapping[str, str], request: Request) -> bool:
    """Whether Istio lets `request` into a pod with `pod_labels` (ALLOW policies only)."""
    applying = [p for p in policies if _selects(p, pod_labels)]
    for policy in applying:
        if policy["spec"].get("action", "ALLOW") != "ALLOW":
            raise ValueError(f"action not modelled: {policy['metadata']['name']}")
    if not applying:
        return True
    return any(_rule(rule, request) for p in applying for rule in p["spec"].get("rules", []))


def _selects(policy: Manifest, pod_labels: Mapping[str, str]) -> bool:
    selector = policy["spec"].get("selector")
    if selector is None:
        return True
    wanted: Mapping[str, str] = selector["matchLabels"]
    return all(pod_labels.get(k) == v for k, v in wanted.items())


def _rule(rule: Mapping[str, Any], request: Request) -> bool:
    if set(rule) - {"from", "to"}:
        raise ValueError(f"rule field not modelled: {rule}")
    sources = [s["source"] for s in rule.get("from", [])]
    operations = [t["operation"] for t in rule.get("to", [])]
    from_ok = not sources or any(_source(s, request) for s in sources)
    to_ok = not operations or any(_operation(o, request) for o in operations)
    return from_ok and to_ok


def _source(source: Mapping[str, Any], request: Request) -> bool:
    if set(source) - {"principals"}:
        raise ValueError(f"source field not modelled: {source}")
    principal = request.principal
    return principal is not None and any(_glob(p, principal) for p in source["principals"])


def _operation(operation: Mapping[str, Any], request: Request) -> bool:
    if set(operation) - {"ports", "paths", "notPaths", "methods"}:
        raise ValueError(f"operation field not modelled: {operation}")
    checks = [
        "ports" not in operation or str(request.port) in operation["ports"],
        "methods" not in operation or request.method in operation["methods"],
        "paths" not in operation
        or (request.path is not None and any(_glob(p, request.path) for p in operation["paths"])),
        "notPaths" not in operation
        or (
            request.path is not None
            and not any(_glob(p, request.path) for p in operation["notPaths"])
        ),
    ]
    # On TCP, a rule with HTTP-only fields never matches (Istio drops it for TCP traffic);
    # with request.path None the checks above already come out False for paths and methods.
    return all(checks)


def _glob(pattern: str, value: str) -> bool:
    """Istio's string match: exact, `prefix*`, `*suffix`, or `*`."""
    if pattern == "*":
        return True
    if pattern.endswith("*"):
        return value.startswith(pattern[:-1])
    if pattern.startswith("*"):
        return value.endswith(pattern[1:])
    return value == pattern
