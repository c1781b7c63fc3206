#!/usr/bin/env python3
"""Prints, as JSON, what the two deploy templates say about the functions, routes, environment,
table and IAM: the input of functions/aws/tests/deploy.rs, which compares it with the code.

Usage: deploy_model.py <terraform dir> <SAM template>

Needs python-hcl2 (the test command installs it in its own venv). Parsing only: every judgement
is the Rust test's, so a template this script misreads shows up there as a mismatch.
"""

import glob
import json
import os
import sys

import hcl2
import yaml


# ---- Terraform -------------------------------------------------------------------------------


def unquote(value):
    """python-hcl2 keeps string literals quoted ("\\"arm64\\"") and keys too; strip them."""
    if isinstance(value, str):
        if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
            try:
                return json.loads(value)
            except json.JSONDecodeError:
                return value[1:-1]
        return value
    if isinstance(value, list):
        return [unquote(v) for v in value]
    if isinstance(value, dict):
        return {unquote(k): unquote(v) for k, v in value.items() if k not in ("__is_block__", "__comments__")}
    return value


def load_terraform(directory):
    merged = {"locals": {}, "resource": {}, "data": {}}
    for path in sorted(glob.glob(os.path.join(directory, "*.tf"))):
        with open(path) as f:
            doc = unquote(hcl2.load(f))
        for block in doc.get("locals", []):
            merged["locals"].update(block)
        for kind in ("resource", "data"):
            for block in doc.get(kind, []):
                for rtype, named in block.items():
                    for name, body in named.items():
                        merged[kind][f"{rtype}.{name}"] = body
    return merged


def first(blocks):
    """A nested block is a list of one dict in python-hcl2's output."""
    return blocks[0] if isinstance(blocks, list) and blocks else (blocks or {})


def terraform_model(directory):
    tf = load_terraform(directory)
    functions = {}
    for name, f in tf["locals"].get("functions", {}).items():
        functions[name] = {
            "route": f.get("route"),
            "dynamodb_actions": sorted(f.get("dynamodb_actions", [])),
            "manages_websocket": bool(f.get("manages_websocket")),
        }
    lam = tf["resource"].get("aws_lambda_function.function", {})
    table = tf["resource"].get("aws_dynamodb_table.chat", {})
    routes = tf["resource"].get("aws_apigatewayv2_route.websocket", {})
    policy = tf["data"].get("aws_iam_policy_document.function", {})
    statements = policy.get("statement", [])
    dynamic = policy.get("dynamic", [])
    for block in dynamic:
        for content in block.get("statement", {}).get("content", []) if isinstance(block.get("statement"), dict) else []:
            statements.append(content)
    return {
        "functions": functions,
        "wiring": {
            # How the resources use locals.functions: the test requires exactly these.
            "lambda_for_each": lam.get("for_each"),
            "lambda_artifact": lam.get("filename"),
            "lambda_runtime": lam.get("runtime"),
            "lambda_architectures": lam.get("architectures"),
            "lambda_environment": first(lam.get("environment")).get("variables"),
            "route_for_each": routes.get("for_each"),
            "route_key": routes.get("route_key"),
            "table_actions": next(
                (s.get("actions") for s in statements if s.get("sid") == "ChatTable"), None
            ),
            "table_resources": next(
                (s.get("resources") for s in statements if s.get("sid") == "ChatTable"), None
            ),
        },
        "environment": sorted(tf["locals"].get("environment", {}).keys()),
        "table": {
            "hash_key": table.get("hash_key"),
            "range_key": table.get("range_key"),
            "attributes": sorted(
                (a.get("name"), a.get("type")) for a in table.get("attribute", [])
            ),
            "ttl_attribute": first(table.get("ttl")).get("attribute_name"),
            "ttl_enabled": first(table.get("ttl")).get("enabled"),
            "indexes": [g.get("name") for g in table.get("global_secondary_index", [])]
            + [l.get("name") for l in table.get("local_secondary_index", [])],
            "billing_mode": table.get("billing_mode"),
            "point_in_time_recovery": first(table.get("point_in_time_recovery")).get("enabled"),
            "encrypted": first(table.get("server_side_encryption")).get("enabled"),
        },
        "iam_actions": sorted(
            a
            for s in statements
            for a in (s.get("actions") if isinstance(s.get("actions"), list) else [])
        ),
    }


# ---- SAM -------------------------------------------------------------------------------------


class CfnLoader(yaml.SafeLoader):
    """Reads CloudFormation's short tags (!Ref, !GetAtt, !Sub, …) as their long forms."""


def _tag(loader, suffix, node):
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {name: value}


CfnLoader.add_multi_constructor("!", _tag)


def sam_model(path):
    with open(path) as f:
        doc = yaml.load(f, Loader=CfnLoader)
    resources = doc.get("Resources", {})
    env = doc.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {})
    functions = {}
    iam_actions = []
    for logical, res in resources.items():
        if res.get("Type") != "AWS::Serverless::Function":
            continue
        binary = res.get("Metadata", {}).get("BuildProperties", {}).get("Binary")
        props = res.get("Properties", {})
        role_name = props.get("Role", {}).get("Fn::GetAtt", [None])[0]
        role = resources.get(role_name, {}).get("Properties", {})
        actions, manages = [], False
        for pol in role.get("Policies", []):
            for st in pol.get("PolicyDocument", {}).get("Statement", []):
                if "Fn::If" in st:
                    st = st["Fn::If"][1]
                acts = st.get("Action", [])
                acts = [acts] if isinstance(acts, str) else acts
                iam_actions.extend(acts)
                if st.get("Sid") == "ChatTable":
                    actions = sorted(a.split(":", 1)[1] for a in acts)
                if "execute-api:ManageConnections" in acts:
                    manages = True
        functions[binary] = {
            "logical_id": logical,
            "build_method": res.get("Metadata", {}).get("BuildMethod"),
            "dynamodb_actions": actions,
            "manages_websocket": manages,
            "route": None,
            "http_events": sorted(
                f"{e['Properties']['Method']} {e['Properties']['Path']}"
                for e in props.get("Events", {}).values()
                if e.get("Type") == "HttpApi"
            ),
        }
    by_logical = {f["logical_id"]: name for name, f in functions.items()}
    # Route → Integration → Function.
    for logical, res in resources.items():
        if res.get("Type") != "AWS::ApiGatewayV2::Route":
            continue
        props = res["Properties"]
        target = props.get("Target", {}).get("Fn::Sub", "")
        integration = resources.get(target.replace("integrations/${", "").rstrip("}"), {})
        uri = integration.get("Properties", {}).get("IntegrationUri", {}).get("Fn::Sub", "")
        for fn_logical, name in by_logical.items():
            if "${" + fn_logical + ".Arn}" in uri:
                functions[name]["route"] = props.get("RouteKey")
    table = next(
        (r["Properties"] for r in resources.values() if r.get("Type") == "AWS::DynamoDB::Table"), {}
    )
    keys = {k["KeyType"]: k["AttributeName"] for k in table.get("KeySchema", [])}
    glob_props = doc.get("Globals", {}).get("Function", {})
    return {
        "functions": functions,
        "wiring": {
            "lambda_runtime": glob_props.get("Runtime"),
            "lambda_architectures": glob_props.get("Architectures"),
        },
        "environment": sorted(env.keys()),
        "table": {
            "hash_key": keys.get("HASH"),
            "range_key": keys.get("RANGE"),
            "attributes": sorted(
                (a["AttributeName"], a["AttributeType"]) for a in table.get("AttributeDefinitions", [])
            ),
            "ttl_attribute": table.get("TimeToLiveSpecification", {}).get("AttributeName"),
            "ttl_enabled": table.get("TimeToLiveSpecification", {}).get("Enabled"),
            "indexes": [g.get("IndexName") for g in table.get("GlobalSecondaryIndexes", [])]
            + [l.get("IndexName") for l in table.get("LocalSecondaryIndexes", [])],
            "billing_mode": table.get("BillingMode"),
            "point_in_time_recovery": table.get("PointInTimeRecoverySpecification", {}).get(
                "PointInTimeRecoveryEnabled"
            ),
            "encrypted": table.get("SSESpecification", {}).get("SSEEnabled"),
        },
        "iam_actions": sorted(iam_actions),
    }


def main():
    terraform_dir, sam_template = sys.argv[1], sys.argv[2]
    json.dump(
        {"terraform": terraform_model(terraform_dir), "sam": sam_model(sam_template)},
        sys.stdout,
        indent=1,
        sort_keys=True,
    )


if __name__ == "__main__":
    main()
