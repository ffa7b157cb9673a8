#!/usr/bin/env python3
"""Build a kustomization the way ``kustomize build`` (and ``kubectl apply -k``) does, for the
subset of kustomize that ``deploy/k8s`` uses, without the kustomize binary.

    python deploy/k8s/render.py deploy/k8s/overlays/production     # the YAML, to stdout
    python deploy/k8s/render.py overlays/local                     # relative to deploy/k8s too

Importable: :func:`render` returns the documents as dicts, in kustomize's output order.

The subset, and nothing else: anything outside it is refused (:class:`KustomizeError`, exit
status 2, naming the file and the key), so that what this prints never silently differs from
what kustomize builds.

``kustomization.yaml`` keys:

- ``apiVersion: kustomize.config.k8s.io/v1beta1`` and ``kind: Kustomization`` (both required);
- ``resources``: files of the kustomization's own directory (or below it: kustomize's default
  load restriction) holding YAML documents, or directories holding a kustomization (anywhere),
  built first with their own transformers; no URLs;
- ``namespace``: set on every namespaced resource (cluster-scoped kinds keep none); a
  ``Namespace`` resource is renamed to it; a (Cluster)RoleBinding subject gets it only when the
  subject is named ``default``, as kustomize does (a RoleBinding's ServiceAccount subject without
  a namespace means the binding's own namespace to Kubernetes anyway);
- ``labels``: a list of ``{pairs, includeSelectors: false, includeTemplates}``: the pairs go to
  every resource's ``metadata.labels`` and, with ``includeTemplates: true``, to the pod templates
  of the workload kinds (selectors are never touched: ``commonLabels`` and
  ``includeSelectors: true`` are refused);
- ``images``: ``{name, newName, newTag, digest}``: every ``image`` of an element of a
  ``containers`` or ``initContainers`` list, anywhere in a resource (not a
  CustomResourceDefinition), whose name (the part before ``:tag`` / ``@digest``) is ``name``;
- ``patches``: ``{target: {kind, name, group, version}, patch: <JSON 6902 text>}``: each target
  field an anchored regular expression as in kustomize (kind required; exact names are the
  intended use, and only ``[A-Za-z0-9.-]`` is accepted); the patch a YAML or JSON list of
  operations ``add`` (``-`` appends to a list), ``replace`` and ``remove`` on RFC 6901 JSON
  pointers (``~0``, ``~1``). A target that selects nothing is an error here (kustomize ignores
  it), as are negative or zero-padded list indices (which kustomize's json-patch library
  accepts) and the root path ``""``;
- ``secretGenerator`` / ``configMapGenerator``: ``{name, literals, type (secrets only),
  options: {disableNameSuffixHash: true}}``: the name-suffix hash, and the rewriting of every
  reference to the hashed name that comes with it, are outside the subset, so
  ``disableNameSuffixHash: true`` is required.

Transformers run in kustomize's order (patches, namespace, labels, images) after the generators,
over the resources of that kustomization and of everything it includes; the output is sorted in
kustomize's default ("legacy") order. YAML is read as YAML 1.2 (what kustomize reads); a plain
scalar that YAML 1.1 (what ``kubectl`` reads kustomize's output with) would type differently
(``on``, ``no``, ``0755``, ``1_000``, ``2024-01-01``, ...) is refused: quote it. Duplicate mapping
keys, anchors and aliases are refused too.
"""

from __future__ import annotations

import argparse
import base64
import copy
import re
import sys
from pathlib import Path
from typing import Any

import yaml

KUSTOMIZATION_API_VERSION = "kustomize.config.k8s.io/v1beta1"
KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
KUSTOMIZATION_KEYS = ("apiVersion", "kind", "resources", "namespace", "labels", "images",
                      "patches", "secretGenerator", "configMapGenerator")
PATCH_OPS = ("add", "replace", "remove")

#: Kinds that are cluster-scoped (no namespace). kustomize asks its built-in OpenAPI data;
#: these are the cluster-scoped kinds of Kubernetes 1.30. Any other kind is namespaced.
CLUSTER_SCOPED_KINDS = frozenset({
    "APIService", "CSIDriver", "CSINode", "CertificateSigningRequest", "ClusterRole",
    "ClusterRoleBinding", "ClusterTrustBundle", "ComponentStatus", "CustomResourceDefinition",
    "FlowSchema", "IPAddress", "IngressClass", "MutatingAdmissionPolicy",
    "MutatingAdmissionPolicyBinding", "MutatingWebhookConfiguration", "Namespace", "Node",
    "PersistentVolume", "PodSecurityPolicy", "PriorityClass", "PriorityLevelConfiguration",
    "ResourceClass", "RuntimeClass", "SelfSubjectAccessReview", "SelfSubjectReview",
    "SelfSubjectRulesReview", "ServiceCIDR", "StorageClass", "StorageVersion",
    "StorageVersionMigration", "SubjectAccessReview", "TokenReview",
    "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding",
    "ValidatingWebhookConfiguration", "VolumeAttachment", "VolumeAttributesClass",
})

#: kustomize's templateLabels field specs: (group, version, kind, path); "" matches any.
TEMPLATE_LABEL_FIELDS = (
    ("", "v1", "ReplicationController", ("spec", "template", "metadata", "labels")),
    ("", "", "Deployment", ("spec", "template", "metadata", "labels")),
    ("", "", "ReplicaSet", ("spec", "template", "metadata", "labels")),
    ("", "", "DaemonSet", ("spec", "template", "metadata", "labels")),
    ("apps", "", "StatefulSet", ("spec", "template", "metadata", "labels")),
    ("batch", "", "Job", ("spec", "template", "metadata", "labels")),
    ("batch", "", "CronJob", ("spec", "jobTemplate", "metadata", "labels")),
    ("batch", "", "CronJob", ("spec", "jobTemplate", "spec", "template", "metadata", "labels")),
)

#: kustomize's legacy output order: these kinds first, in this order; then every other kind;
#: then ORDER_LAST. Within a rank, by group_version_kind, then namespace, then name.
ORDER_FIRST = ("Namespace", "ResourceQuota", "StorageClass", "CustomResourceDefinition",
               "ServiceAccount", "PodSecurityPolicy", "Role", "ClusterRole", "RoleBinding",
               "ClusterRoleBinding", "ConfigMap", "Secret", "Endpoints", "Service",
               "LimitRange", "PriorityClass", "PersistentVolume", "PersistentVolumeClaim",
               "Deployment", "StatefulSet", "CronJob", "PodDisruptionBudget")
ORDER_LAST = ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration")

_SELECTOR_VALUE = re.compile(r"[A-Za-z0-9.-]+")
_IMAGE_NAME = re.compile(r"[A-Za-z0-9._/:-]+")
_DATA_KEY = re.compile(r"[-._a-zA-Z0-9]+")
_LIST_INDEX = re.compile(r"0|[1-9][0-9]*")


class KustomizeError(Exception):
    """A kustomization this renderer does not build (outside the subset, or wrong)."""


# ---- YAML ----------------------------------------------------------------------------------

#: Plain scalars YAML 1.1 types differently from YAML 1.2: 1.1's booleans, its octal and
#: base-2 and sexagesimal integers, underscores in numbers, timestamps, the value key.
_AMBIGUOUS = re.compile(r"""(?x)^(?:
    y|Y|yes|Yes|YES|n|N|no|No|NO|on|On|ON|off|Off|OFF
  | [-+]?0[0-9_]+(?:\.[0-9_]*)?
  | [-+]?0[bo][0-7_]+
  | [-+]?[0-9][0-9_]*_[0-9_.]*
  | [-+]?[0-9_.]*[0-9][0-9_.]*[eE][-+]?[0-9]+
  | [-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?
  | [0-9]{4}-[0-9]{1,2}-[0-9]{1,2}(?:(?:[Tt]|[ \t]+)[0-9].*)?
  | =
)$""")
_AMBIGUOUS_TAG = "tag:tuoyu.invalid,2024:ambiguous"


class _Loader(yaml.SafeLoader):
    """YAML 1.2's core schema (null, true/false, decimal/0o/0x integers, floats; everything
    else a string), refusing 1.1-ambiguous plain scalars, duplicate keys and aliases."""

    yaml_implicit_resolvers: dict[str, list[tuple[str, re.Pattern[str]]]] = {}

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            mark = event.start_mark
            raise KustomizeError(f"{mark.name}:{mark.line + 1}: YAML anchors and aliases are "
                                 "outside the subset")
        return super().compose_node(parent, index)

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key == "<<" and key_node.style is None:
                raise KustomizeError(f"{key_node.start_mark.name}:"
                                     f"{key_node.start_mark.line + 1}: YAML merge keys (<<) "
                                     "are outside the subset")
            if key in seen:
                raise KustomizeError(f"{key_node.start_mark.name}:"
                                     f"{key_node.start_mark.line + 1}: duplicate key {key!r}")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _ambiguous(loader: _Loader, node: yaml.ScalarNode) -> Any:
    raise KustomizeError(f"{node.start_mark.name}:{node.start_mark.line + 1}: the plain "
                         f"scalar {node.value!r} means something else to YAML 1.1 (kubectl) "
                         "than to YAML 1.2 (kustomize): quote it")


_Loader.add_implicit_resolver(_AMBIGUOUS_TAG, _AMBIGUOUS, list("yYnNoO-+.0123456789="))
_Loader.add_implicit_resolver("tag:yaml.org,2002:bool",
                              re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                              list("tTfF"))
_Loader.add_implicit_resolver("tag:yaml.org,2002:int",
                              re.compile(r"^(?:[-+]?[0-9]+|0x[0-9a-fA-F]+)$"),
                              list("-+0123456789"))
_Loader.add_implicit_resolver("tag:yaml.org,2002:float", re.compile(
    r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
    r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"), list("-+0123456789."))
_Loader.add_implicit_resolver("tag:yaml.org,2002:null", re.compile(r"^(?:~|null|Null|NULL|)$"),
                              ["~", "n", "N", ""])
_Loader.add_constructor(_AMBIGUOUS_TAG, _ambiguous)
for _tag in ("tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:binary", "tag:yaml.org,2002:omap",
             "tag:yaml.org,2002:pairs", "tag:yaml.org,2002:set"):
    _Loader.add_constructor(_tag, _ambiguous)


def load_yaml(text: str, name: str) -> list[Any]:
    """The documents of YAML ``text`` (``name`` for messages), empty documents left out."""
    loader = _Loader(text)
    loader.name = name
    try:
        docs = []
        while loader.check_data():
            doc = loader.get_data()
            if doc is not None:
                docs.append(doc)
        return docs
    except yaml.YAMLError as e:
        raise KustomizeError(f"{name}: not YAML: {e}") from None
    finally:
        loader.dispose()


class _Dumper(yaml.SafeDumper):
    """Block style; multi-line strings as literal blocks; YAML 1.1 quoting (SafeDumper quotes
    every string a 1.1 reader would take for a boolean or a number)."""


def _str(dumper: _Dumper, value: str) -> Any:
    if "\n" in value:
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", value)


_Dumper.add_representer(str, _str)


def dump(docs: list[dict[str, Any]]) -> str:
    """Multi-document YAML, as ``kustomize build`` prints (``---`` between documents)."""
    return yaml.dump_all(docs, Dumper=_Dumper, sort_keys=False, default_flow_style=False,
                         allow_unicode=True, width=100)


# ---- resources -----------------------------------------------------------------------------

def _where(source: str, key: str) -> str:
    return f"{source}: {key}"


def group_version(api_version: str) -> tuple[str, str]:
    group, sep, version = api_version.rpartition("/")
    return (group, version) if sep else ("", api_version)


def resource_id(doc: dict[str, Any]) -> tuple[str, str, str, str, str]:
    group, version = group_version(doc["apiVersion"])
    meta = doc.get("metadata") or {}
    return group, version, doc["kind"], meta.get("namespace") or "", meta["name"]


def _describe(doc: dict[str, Any]) -> str:
    group, version, kind, namespace, name = resource_id(doc)
    return f"{kind}/{name}" + (f" (namespace {namespace})" if namespace else "")


def load_resources(path: Path) -> list[dict[str, Any]]:
    """The Kubernetes objects of a YAML file: each a mapping with apiVersion, kind and
    metadata.name (``List`` kinds are outside the subset)."""
    docs = load_yaml(path.read_text(encoding="utf-8"), str(path))
    for n, doc in enumerate(docs, start=1):
        where = f"{path}: document {n}"
        if not isinstance(doc, dict):
            raise KustomizeError(f"{where}: not a mapping")
        for key in ("apiVersion", "kind"):
            if not isinstance(doc.get(key), str) or not doc[key]:
                raise KustomizeError(f"{where}: missing {key}")
        if doc["kind"] == "List" or (doc["kind"].endswith("List") and "items" in doc):
            raise KustomizeError(f"{where}: kind {doc['kind']}: lists are outside the subset")
        meta = doc.get("metadata")
        if not isinstance(meta, dict) or not isinstance(meta.get("name"), str) \
                or not meta["name"]:
            raise KustomizeError(f"{where}: missing metadata.name")
    return docs


def _add(resources: list[dict[str, Any]], new: list[dict[str, Any]], source: str) -> None:
    known = {resource_id(doc) for doc in resources}
    for doc in new:
        rid = resource_id(doc)
        if rid in known:
            raise KustomizeError(f"{source}: {_describe(doc)} is already in the build "
                                 "(kustomize: may not add resource with an already "
                                 "registered id)")
        known.add(rid)
        resources.append(doc)


# ---- kustomization -------------------------------------------------------------------------

def kustomization_file(directory: Path) -> Path:
    found = [directory / name for name in KUSTOMIZATION_FILES if (directory / name).is_file()]
    if not found:
        raise KustomizeError(f"{directory}: no kustomization.yaml")
    if len(found) > 1:
        raise KustomizeError(f"{directory}: more than one kustomization file: "
                             + ", ".join(p.name for p in found))
    return found[0]


def _mapping(value: Any, where: str, allowed: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise KustomizeError(f"{where}: expected a mapping")
    for key in value:
        if key not in allowed:
            raise KustomizeError(f"{where}: key {key!r} is outside the subset this renderer "
                                 f"builds (allowed: {', '.join(allowed)})")
    return value


def _list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise KustomizeError(f"{where}: expected a list")
    return value


def _string(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise KustomizeError(f"{where}: expected a non-empty string")
    return value


def read_kustomization(path: Path) -> dict[str, Any]:
    docs = load_yaml(path.read_text(encoding="utf-8"), str(path))
    if len(docs) != 1:
        raise KustomizeError(f"{path}: expected one YAML document")
    k = _mapping(docs[0], str(path), KUSTOMIZATION_KEYS)
    if k.get("apiVersion") != KUSTOMIZATION_API_VERSION:
        raise KustomizeError(f"{_where(str(path), 'apiVersion')}: must be "
                             f"{KUSTOMIZATION_API_VERSION}")
    if k.get("kind") != "Kustomization":
        raise KustomizeError(f"{_where(str(path), 'kind')}: must be Kustomization "
                             "(components are outside the subset)")
    return k


def build(directory: Path, _stack: tuple[Path, ...] = ()) -> list[dict[str, Any]]:
    """The resources of the kustomization in ``directory``, transformed (not sorted)."""
    directory = directory.resolve()
    if directory in _stack:
        raise KustomizeError("cycle of kustomizations: "
                             + " -> ".join(str(p) for p in (*_stack, directory)))
    path = kustomization_file(directory)
    source = str(path)
    k = read_kustomization(path)
    resources: list[dict[str, Any]] = []

    for n, entry in enumerate(_list(k.get("resources", []), _where(source, "resources"))):
        where = _where(source, f"resources[{n}]")
        entry = _string(entry, where)
        if "://" in entry or entry.startswith(("github.com/", "git@")):
            raise KustomizeError(f"{where}: remote resources ({entry}) are outside the subset")
        target = (directory / entry).resolve()
        if target.is_dir():
            _add(resources, build(target, (*_stack, directory)), where)
        elif target.is_file():
            if not target.is_relative_to(directory):
                raise KustomizeError(f"{where}: {entry} is not in or below {directory} "
                                     "(kustomize's load restriction)")
            _add(resources, load_resources(target), where)
        else:
            raise KustomizeError(f"{where}: {entry}: no such file or directory")

    for key, kind in (("configMapGenerator", "ConfigMap"), ("secretGenerator", "Secret")):
        for n, args in enumerate(_list(k.get(key, []), _where(source, key))):
            where = _where(source, f"{key}[{n}]")
            _add(resources, [generate(kind, args, where)], where)

    for n, patch in enumerate(_list(k.get("patches", []), _where(source, "patches"))):
        apply_patch_entry(resources, patch, _where(source, f"patches[{n}]"))
    if "namespace" in k:
        namespace = _string(k["namespace"], _where(source, "namespace"))
        if not re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", namespace):
            raise KustomizeError(f"{_where(source, 'namespace')}: {namespace!r} is not a "
                                 "namespace name")
        for doc in resources:
            set_namespace(doc, namespace)
    for n, label in enumerate(_list(k.get("labels", []), _where(source, "labels"))):
        apply_labels(resources, label, _where(source, f"labels[{n}]"))
    for n, image in enumerate(_list(k.get("images", []), _where(source, "images"))):
        apply_image(resources, image, _where(source, f"images[{n}]"))
    return resources


def render(overlay_dir: str | Path) -> list[dict[str, Any]]:
    """The documents ``kustomize build overlay_dir`` prints, in its order, as dicts."""
    return legacy_sort(build(Path(overlay_dir)))


# ---- generators ----------------------------------------------------------------------------

def parse_literal(source: str, where: str) -> tuple[str, str]:
    """kustomize's ``KEY=VALUE`` (split at the first ``=``; one pair of matching quotes
    around the value removed)."""
    if not isinstance(source, str):
        raise KustomizeError(f"{where}: expected a string KEY=VALUE")
    key, sep, value = source.partition("=")
    if not sep or not key:
        raise KustomizeError(f"{where}: invalid literal source {source!r}, expected key=value")
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        value = value[1:-1]
    if not _DATA_KEY.fullmatch(key):
        raise KustomizeError(f"{where}: {key!r} is not a valid key (alphanumerics, '-', '_' "
                             "or '.')")
    return key, value


def generate(kind: str, args: Any, where: str) -> dict[str, Any]:
    allowed = ("name", "literals", "options") + (("type",) if kind == "Secret" else ())
    args = _mapping(args, where, allowed)
    name = _string(args.get("name"), f"{where}.name")
    options = _mapping(args.get("options", {}), f"{where}.options",
                       ("disableNameSuffixHash",))
    if options.get("disableNameSuffixHash") is not True:
        raise KustomizeError(f"{where}.options.disableNameSuffixHash: must be true (the "
                             "name-suffix hash, and rewriting the references to the hashed "
                             "name, are outside the subset)")
    data: dict[str, str] = {}
    for n, literal in enumerate(_list(args.get("literals", []), f"{where}.literals")):
        key, value = parse_literal(literal, f"{where}.literals[{n}]")
        if key in data:
            raise KustomizeError(f"{where}: {kind.lower()} {name} illegally repeats the key "
                                 f"{key}")
        data[key] = value
    doc: dict[str, Any] = {"apiVersion": "v1", "kind": kind, "metadata": {"name": name}}
    if kind == "Secret":
        doc["type"] = _string(args.get("type", "Opaque"), f"{where}.type")
        doc["data"] = {key: base64.b64encode(data[key].encode()).decode()
                       for key in sorted(data)}
    else:
        doc["data"] = {key: data[key] for key in sorted(data)}
    return doc


# ---- JSON patch (RFC 6902) -----------------------------------------------------------------

def parse_pointer(pointer: str, where: str) -> list[str]:
    """RFC 6901: ``/a/b~1c/d~0e`` -> ``["a", "b/c", "d~e"]``. The root (``""``) is outside
    the subset."""
    if not isinstance(pointer, str):
        raise KustomizeError(f"{where}: path must be a string")
    if pointer == "":
        raise KustomizeError(f"{where}: the root path \"\" is outside the subset")
    if not pointer.startswith("/"):
        raise KustomizeError(f"{where}: path {pointer!r} does not start with '/'")
    tokens = pointer[1:].split("/")
    for token in tokens:
        if re.search(r"~(?![01])", token):
            raise KustomizeError(f"{where}: path {pointer!r}: '~' must be followed by 0 or 1")
    return [t.replace("~1", "/").replace("~0", "~") for t in tokens]


def _index(token: str, limit: int, pointer: str, where: str) -> int:
    """``token`` as a list index below ``limit``."""
    if not _LIST_INDEX.fullmatch(token):
        raise KustomizeError(f"{where}: path {pointer!r}: {token!r} is not a list index "
                             "(negative and zero-padded indices are outside the subset)")
    index = int(token)
    if index >= limit:
        raise KustomizeError(f"{where}: path {pointer!r}: index {index} is out of range "
                             f"(at most {limit - 1})")
    return index


def apply_operation(doc: Any, operation: Any, where: str) -> Any:
    """``doc`` with one RFC 6902 operation (add, replace, remove) applied in place."""
    if not isinstance(operation, dict):
        raise KustomizeError(f"{where}: an operation is a mapping")
    op = operation.get("op")
    if op not in PATCH_OPS:
        raise KustomizeError(f"{where}: op {op!r} is outside the subset this renderer builds "
                             f"(allowed: {', '.join(PATCH_OPS)})")
    _mapping(operation, where, ("op", "path", "value"))
    if "path" not in operation:
        raise KustomizeError(f"{where}: op {op}: missing path")
    pointer = operation["path"]
    tokens = parse_pointer(pointer, where)
    if op == "remove" and "value" in operation:
        raise KustomizeError(f"{where}: op remove takes no value")
    if op != "remove" and "value" not in operation:
        raise KustomizeError(f"{where}: op {op}: missing value")
    value = copy.deepcopy(operation.get("value"))

    parent = doc
    for depth, token in enumerate(tokens[:-1]):
        here = "/" + "/".join(tokens[:depth + 1])
        if isinstance(parent, dict):
            if token not in parent:
                raise KustomizeError(f"{where}: op {op}: path {pointer!r}: {here} does not "
                                     "exist")
            parent = parent[token]
        elif isinstance(parent, list):
            parent = parent[_index(token, len(parent), pointer, where)]
        else:
            raise KustomizeError(f"{where}: op {op}: path {pointer!r}: {here} is inside a "
                                 "scalar")
    last = tokens[-1]
    if isinstance(parent, dict):
        if op == "add":
            parent[last] = value
        elif last not in parent:
            raise KustomizeError(f"{where}: op {op}: path {pointer!r} does not exist")
        elif op == "replace":
            parent[last] = value
        else:
            del parent[last]
    elif isinstance(parent, list):
        if op == "add" and last == "-":
            parent.append(value)
        elif op == "add":
            parent.insert(_index(last, len(parent) + 1, pointer, where), value)
        elif op == "replace":
            parent[_index(last, len(parent), pointer, where)] = value
        else:
            del parent[_index(last, len(parent), pointer, where)]
    else:
        raise KustomizeError(f"{where}: op {op}: path {pointer!r}: the parent is a scalar")
    return doc


def apply_json_patch(doc: Any, operations: list[Any], where: str) -> Any:
    for n, operation in enumerate(operations):
        apply_operation(doc, operation, f"{where}[{n}]")
    return doc


def parse_patch(text: Any, where: str) -> list[Any]:
    if not isinstance(text, str):
        raise KustomizeError(f"{where}.patch: must be a string (a block scalar holding the "
                             "JSON 6902 operations)")
    docs = load_yaml(text.strip(), f"{where}.patch")
    if len(docs) != 1 or not isinstance(docs[0], list):
        raise KustomizeError(f"{where}.patch: not a list of JSON 6902 operations (strategic "
                             "merge patches are outside the subset)")
    if not docs[0]:
        raise KustomizeError(f"{where}.patch: no operations")
    return docs[0]


def _selected(doc: dict[str, Any], target: dict[str, str]) -> bool:
    group, version, kind, _, name = resource_id(doc)
    for key, value in (("group", group), ("version", version), ("kind", kind),
                       ("name", name)):
        if key in target and not re.fullmatch(f"(?:{target[key]})", value):
            return False
    return True


def apply_patch_entry(resources: list[dict[str, Any]], entry: Any, where: str) -> None:
    entry = _mapping(entry, where, ("target", "patch"))
    if "patch" not in entry:
        raise KustomizeError(f"{where}: missing patch (patches from files, path:, are outside "
                             "the subset)")
    target = _mapping(entry.get("target"), f"{where}.target",
                      ("kind", "name", "group", "version"))
    if "kind" not in target:
        raise KustomizeError(f"{where}.target: kind is required")
    for key, value in target.items():
        if not isinstance(value, str) or not _SELECTOR_VALUE.fullmatch(value):
            raise KustomizeError(f"{where}.target.{key}: {value!r}: only names of "
                                 "[A-Za-z0-9.-] are in the subset")
    operations = parse_patch(entry["patch"], where)
    selected = [doc for doc in resources if _selected(doc, target)]
    if not selected:
        raise KustomizeError(f"{where}: the target {target} selects no resource (kustomize "
                             "would ignore the patch)")
    for doc in selected:
        apply_json_patch(doc, operations, f"{where} on {_describe(doc)}")
        for key in ("apiVersion", "kind"):
            if not isinstance(doc.get(key), str):
                raise KustomizeError(f"{where}: the patch removed {key}")
        if not isinstance((doc.get("metadata") or {}).get("name"), str):
            raise KustomizeError(f"{where}: the patch removed metadata.name")


# ---- namespace, labels, images -------------------------------------------------------------

def set_namespace(doc: dict[str, Any], namespace: str) -> None:
    kind = doc["kind"]
    group, version = group_version(doc["apiVersion"])
    meta = doc.setdefault("metadata", {})
    if kind not in CLUSTER_SCOPED_KINDS:
        meta["namespace"] = namespace
    if kind == "Namespace" and doc["apiVersion"] == "v1":
        meta["name"] = namespace
    if kind in ("RoleBinding", "ClusterRoleBinding"):
        for subject in doc.get("subjects") or []:
            if isinstance(subject, dict) and subject.get("name") == "default":
                subject["namespace"] = namespace
    if kind == "APIService" and group == "apiregistration.k8s.io":
        spec = doc.setdefault("spec", {})
        if isinstance(spec, dict):
            spec.setdefault("service", {})["namespace"] = namespace
    if kind == "CustomResourceDefinition" and group == "apiextensions.k8s.io":
        service = ((((doc.get("spec") or {}).get("conversion") or {}).get("webhook") or {})
                   .get("clientConfig") or {}).get("service")
        if isinstance(service, dict) and "namespace" in service:
            service["namespace"] = namespace


def _labels_at(doc: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any]:
    node = doc
    for key in path:
        if not isinstance(node.get(key), dict):
            node[key] = {}
        node = node[key]
    return node


def apply_labels(resources: list[dict[str, Any]], label: Any, where: str) -> None:
    label = _mapping(label, where, ("pairs", "includeSelectors", "includeTemplates"))
    if label.get("includeSelectors", False) is not False:
        raise KustomizeError(f"{where}.includeSelectors: only false is in the subset "
                             "(selectors are immutable once applied)")
    templates = label.get("includeTemplates", False)
    if not isinstance(templates, bool):
        raise KustomizeError(f"{where}.includeTemplates: expected true or false")
    pairs = label.get("pairs")
    if not isinstance(pairs, dict) or not pairs:
        raise KustomizeError(f"{where}.pairs: expected a mapping of labels")
    for key, value in pairs.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise KustomizeError(f"{where}.pairs: {key!r}: keys and values must be strings")
    for doc in resources:
        _labels_at(doc, ("metadata", "labels")).update(pairs)
        if not templates:
            continue
        group, version, kind, _, _ = resource_id(doc)
        for fs_group, fs_version, fs_kind, path in TEMPLATE_LABEL_FIELDS:
            if kind == fs_kind and fs_group in ("", group) and fs_version in ("", version):
                _labels_at(doc, path).update(pairs)


def split_image(image: str) -> tuple[str, str, str]:
    """kustomize's ``image.Split``: ``name``, ``tag``, ``digest`` of
    ``[host[:port]/]path[:tag][@digest]``."""
    slash = image.find("/")
    offset = slash if slash > 0 else 0
    search = image[offset:]
    at, colon = search.find("@"), search.find(":")
    if colon < 0 and at < 0:
        return image, "", ""
    if at >= 0 and (at < colon or colon < 0):
        return image[:offset + at], "", image[offset + at + 1:]
    if at >= 0 and colon >= 0:
        return (image[:offset + colon], image[offset + colon + 1:offset + at],
                image[offset + at + 1:])
    return image[:offset + colon], image[offset + colon + 1:], ""


def image_matches(image: str, name: str) -> bool:
    """kustomize's ``image.IsImageMatched``: ``image`` is ``name`` (a regular expression
    there; here only of ``[A-Za-z0-9._/:-]``, so only ``.`` is special) with or without a tag
    and a digest."""
    return re.fullmatch(f"(?:{name})" r"(:[a-zA-Z0-9_.{}-]*)?"
                        r"(@[a-zA-Z0-9]+([.+_-][a-zA-Z0-9]+)*:[a-zA-Z0-9_.{}-]*)?",
                        image) is not None


def new_image(image: str, spec: dict[str, str]) -> str:
    name, tag, digest = split_image(image)
    name = spec.get("newName") or name
    if spec.get("newTag") and spec.get("digest"):
        tag, digest = spec["newTag"], spec["digest"]
    elif spec.get("newTag"):
        tag, digest = spec["newTag"], ""
    elif spec.get("digest"):
        tag, digest = "", spec["digest"]
    return name + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")


def _containers(node: Any) -> Any:
    """Every list under a ``containers`` or ``initContainers`` key, anywhere in ``node``."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _containers(value)
            if key in ("containers", "initContainers") and isinstance(value, list):
                yield value
    elif isinstance(node, list):
        for item in node:
            yield from _containers(item)


def apply_image(resources: list[dict[str, Any]], spec: Any, where: str) -> None:
    spec = _mapping(spec, where, ("name", "newName", "newTag", "digest"))
    name = _string(spec.get("name"), f"{where}.name")
    if not _IMAGE_NAME.fullmatch(name):
        raise KustomizeError(f"{where}.name: {name!r}: regular expressions are outside the "
                             "subset")
    if not any(key in spec for key in ("newName", "newTag", "digest")):
        raise KustomizeError(f"{where}: none of newName, newTag, digest")
    for key in ("newName", "newTag", "digest"):
        if key in spec:
            _string(spec[key], f"{where}.{key}")
    for doc in resources:
        if doc["kind"] == "CustomResourceDefinition":
            continue
        for containers in _containers(doc):
            for container in containers:
                if not isinstance(container, dict) or "image" not in container:
                    continue
                image = container["image"]
                if not isinstance(image, str):
                    raise KustomizeError(f"{where}: {_describe(doc)}: an image that is not a "
                                         "string")
                if image_matches(image, name):
                    container["image"] = new_image(image, spec)
        spec_ = doc.get("spec") if isinstance(doc.get("spec"), dict) else {}
        template = spec_.get("template") if isinstance(spec_.get("template"), dict) else {}
        for pod_spec in (spec_, template.get("spec")):
            volumes = pod_spec.get("volumes") if isinstance(pod_spec, dict) else None
            for volume in volumes if isinstance(volumes, list) else []:
                source = volume.get("image") if isinstance(volume, dict) else None
                ref = source.get("reference") if isinstance(source, dict) else None
                if isinstance(ref, str) and image_matches(ref, name):
                    source["reference"] = new_image(ref, spec)


# ---- order ---------------------------------------------------------------------------------

def _gvk_sort_string(group: str, version: str, kind: str) -> str:
    return "_".join((group or "~G", version or "~V", kind or "~K"))


def legacy_sort(resources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """kustomize's default output order (``--reorder legacy``)."""
    rank = {kind: i - len(ORDER_FIRST) for i, kind in enumerate(ORDER_FIRST)}
    rank.update({kind: 1 + i for i, kind in enumerate(ORDER_LAST)})

    def key(doc: dict[str, Any]) -> tuple[int, str, str, str]:
        group, version, kind, namespace, name = resource_id(doc)
        return (rank.get(kind, 0), _gvk_sort_string(group, version, kind),
                namespace or "~X", name or "~N")

    return sorted(resources, key=key)


# ---- command line --------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="render.py", description="Print what `kustomize build DIR` prints, for the "
        "subset of kustomize deploy/k8s uses (see this file's docstring).")
    parser.add_argument("directory", help="a directory holding a kustomization.yaml "
                        "(relative to the current directory, else to deploy/k8s)")
    args = parser.parse_args(argv)
    directory = Path(args.directory)
    if not directory.exists() and not directory.is_absolute():
        beside = Path(__file__).resolve().parent / directory
        if beside.exists():
            directory = beside
    try:
        docs = render(directory)
    except KustomizeError as e:
        print(f"render.py: error: {e}", file=sys.stderr)
        return 2
    sys.stdout.write(dump(docs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
