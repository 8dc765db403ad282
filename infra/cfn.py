"""template.yaml read and resolved: the YAML loader that understands CloudFormation's short tags
(!Ref, !GetAtt, !Sub...), the Resolver that evaluates the intrinsic functions the template uses
against the parameters and what has been created so far, and the order that creates each resource
after the ones it refers to.

It is not a CloudFormation engine: it creates nothing (infra/provision.py does, through the AWS
API), knows no resource type, and supports only the intrinsic functions template.yaml uses; any
other one is a TemplateError rather than a guess.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "template.yaml"
LOCAL = ROOT / ".local"  # what the local stack writes: outputs, logs, charts
REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's default account
STACK = "dataflows-local"


class TemplateError(Exception):
    """template.yaml uses something the local stack cannot create faithfully."""


class _CfnLoader(yaml.SafeLoader):
    pass


def _tag(name: str) -> Callable:
    fn = "Ref" if name == "Ref" else ("Condition" if name == "Condition" else f"Fn::{name}")

    def construct(loader: yaml.Loader, node: yaml.Node) -> dict:
        if isinstance(node, yaml.ScalarNode):
            value: Any = loader.construct_scalar(node)
            if name == "GetAtt":
                value = value.split(".", 1)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)
        return {fn: value}

    return construct


for _name in ["Ref", "GetAtt", "Sub", "If", "Not", "Equals", "And", "Or", "Join", "Select", "Split",
              "FindInMap", "Base64", "ImportValue", "GetAZs", "Condition", "EachMemberEquals"]:
    _CfnLoader.add_constructor(f"!{_name}", _tag(_name))


def load_template(path: Path = TEMPLATE) -> dict:
    with open(path) as f:
        return yaml.load(f, Loader=_CfnLoader)  # noqa: S506 - a SafeLoader subclass


_NO_VALUE = object()


@dataclass
class Resolver:
    """Resolves the intrinsic functions template.yaml uses, against what has been created."""

    template: dict
    parameters: dict[str, str]
    refs: dict[str, str] = field(default_factory=dict)
    attrs: dict[tuple[str, str], str] = field(default_factory=dict)

    def condition(self, name: str) -> bool:
        return bool(self.resolve(self.template.get("Conditions", {})[name]))

    def ref(self, name: str) -> Any:
        if name == "AWS::NoValue":
            return _NO_VALUE
        pseudo = {"AWS::Region": REGION, "AWS::AccountId": ACCOUNT, "AWS::StackName": STACK,
                  "AWS::Partition": "aws", "AWS::URLSuffix": "amazonaws.com"}
        if name in pseudo:
            return pseudo[name]
        if name in self.parameters:
            value = self.parameters[name]
            if self.template.get("Parameters", {}).get(name, {}).get("Type") == "CommaDelimitedList":
                return [x.strip() for x in str(value).split(",")]  # as CloudFormation: "" is [""]
            return value
        if name in self.refs:
            return self.refs[name]
        raise TemplateError(f"Ref {name}: not a parameter or a resource created so far")

    def resolve(self, v: Any) -> Any:
        if isinstance(v, list):
            return [x for x in (self.resolve(i) for i in v) if x is not _NO_VALUE]
        if not isinstance(v, dict):
            return v
        if len(v) == 1:
            (k, arg), = v.items()
            if k == "Ref":
                return self.ref(arg)
            if k == "Fn::GetAtt":
                key = (arg[0], arg[1])
                if key not in self.attrs:
                    raise TemplateError(f"GetAtt {arg[0]}.{arg[1]}: not available")
                return self.attrs[key]
            if k == "Fn::If":
                cond, yes, no = arg
                return self.resolve(yes if self.condition(cond) else no)
            if k == "Fn::Not":
                return not self.resolve(arg[0])
            if k == "Fn::Equals":
                a, b = (self.resolve(x) for x in arg)
                return a == b
            if k == "Fn::And":
                return all(self.resolve(x) for x in arg)
            if k == "Fn::Or":
                return any(self.resolve(x) for x in arg)
            if k == "Condition":
                return self.condition(arg)
            if k == "Fn::Join":
                sep, items = arg
                return sep.join(str(x) for x in self.resolve(items))
            if k == "Fn::FindInMap":
                name, top, second = (str(self.resolve(x)) for x in arg)
                try:
                    return self.template["Mappings"][name][top][second]
                except KeyError:
                    raise TemplateError(f"FindInMap {name}.{top}.{second}: no such entry") from None
            if k == "Fn::Sub":
                text, extra = (arg, {}) if isinstance(arg, str) else (arg[0], self.resolve(arg[1]))
                return self._sub(text, extra)
            if k.startswith("Fn::"):
                raise TemplateError(f"{k} is not supported by the local stack")
        out = {}
        for key, val in v.items():
            r = self.resolve(val)
            if r is not _NO_VALUE:
                out[key] = r
        return out

    def _sub(self, text: str, extra: dict) -> str:
        out, i = [], 0
        while True:
            j = text.find("${", i)
            if j < 0:
                out.append(text[i:])
                return "".join(out)
            k = text.index("}", j)
            out.append(text[i:j])
            name = text[j + 2:k]
            if name in extra:
                out.append(str(extra[name]))
            elif "." in name:
                res, att = name.split(".", 1)
                out.append(str(self.resolve({"Fn::GetAtt": [res, att]})))
            else:
                out.append(str(self.ref(name)))
            i = k + 1


def dependencies(value: Any) -> set[str]:
    """Logical ids a resource's definition refers to."""
    deps: set[str] = set()
    if isinstance(value, dict):
        for k, v in value.items():
            if k == "Ref" and isinstance(v, str):
                deps.add(v)
            elif k == "Fn::GetAtt":
                deps.add(v[0])
            elif k == "Fn::Sub":
                text = v if isinstance(v, str) else v[0]
                for part in text.split("${")[1:]:
                    deps.add(part.split("}")[0].split(".")[0])
                if not isinstance(v, str):
                    deps |= dependencies(v[1])
            else:
                deps |= dependencies(v)
    elif isinstance(value, list):
        for v in value:
            deps |= dependencies(v)
    return deps


def creation_order(resources: dict, function_globals: dict | None = None) -> list[str]:
    order: list[str] = []
    state: dict[str, int] = {}

    def visit(name: str) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            raise TemplateError(f"dependency cycle through {name}")
        state[name] = 1
        body = resources[name]
        deps = dependencies(body.get("Properties", {})) | set(_as_list(body.get("DependsOn", [])))
        if body.get("Type") == "AWS::Serverless::Function":
            deps |= dependencies(function_globals or {})
        for dep in sorted(deps & resources.keys()):
            visit(dep)
        state[name] = 2
        order.append(name)

    for name in resources:
        visit(name)
    return order


def _as_list(v: Any) -> list:
    return v if isinstance(v, list) else [v]
