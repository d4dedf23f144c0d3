"""CloudFormation templates of infra/cloudformation read as data: the short forms (`!Ref`,
`!Sub`, ...) become their long forms (`{"Ref": ...}`, `{"Fn::Sub": ...}`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

TEMPLATES = Path(__file__).resolve().parents[1] / "infra" / "cloudformation"


class _CfnLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short forms (`!Ref`, `!Sub`, ...) as their long forms."""


def _short_form(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        assert isinstance(node, yaml.MappingNode)
        value = loader.construct_mapping(node, deep=True)
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{suffix}": value}


_CfnLoader.add_multi_constructor("!", _short_form)


def load_template(name: str) -> dict[str, Any]:
    with (TEMPLATES / name).open(encoding="utf-8") as source:
        template: dict[str, Any] = yaml.load(source, Loader=_CfnLoader)  # noqa: S506
    return template
