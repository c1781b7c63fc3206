#!/usr/bin/env python3
"""Prints, as JSON, what the two deploy templates say about the functions, routes, environment,
table and IAM, and the integration-event pipeline (stream, queues, event source mappings, every
function's IAM statements, alarms, outputs) with references written the same way for both
(`queue:deliveries`, `table-stream`, `param:webhookurl`, …): the input of
functions/aws/tests/deploy.rs, which compares it with the code and the two with each other.

Usage: deploy_model.py <terraform dir> <SAM template>

Needs python-hcl2 (the test command installs it in its own venv). Parsing only: every judgement
is the Rust test's, so a template this script misreads shows up there as a mismatch.
"""

import glob
import json
import os
import re
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
    merged = {"locals": {}, "resource": {}, "data": {}, "output": {}}
    for path in sorted(glob.glob(os.path.join(directory, "*.tf"))):
        with open(path) as f:
            doc = unquote(hcl2.load(f))
        for block in doc.get("locals", []):
            merged["locals"].update(block)
        for block in doc.get("output", []):
            merged["output"].update(block)
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
    statements = list(policy.get("statement", []))
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
            for st in terraform_statements(tf).values()
            for s in st.values()
            for a in s["actions"]
        ),
        "pipeline": terraform_pipeline(tf),
    }


def filters(patterns):
    """A mapping's filter patterns, parsed, in one order for both templates (Lambda ORs them)."""
    return sorted(patterns, key=lambda p: json.dumps(p, sort_keys=True))


def param(name):
    """A Terraform variable or SAM parameter, named alike: `webhook_url`, `WebhookUrl` → webhookurl."""
    return "param:" + name.replace("_", "").lower()


def tf_canon(tf, value, key=None):
    """A Terraform expression string written as the model's reference names."""
    if isinstance(value, list):
        return [tf_canon(tf, v, key) for v in value]
    if isinstance(value, dict):
        return {k: tf_canon(tf, v, key) for k, v in value.items()}
    if not isinstance(value, str):
        return value
    if value.endswith("/*/@connections/*"):
        return "connections"
    if value == "${data.aws_ssm_parameter.jwt_key.arn}":
        return "ssm:jwt-key"
    if value.startswith("${aws_cloudwatch_log_group.function[each.key].arn}"):
        return f"log-group:{key}"
    m = re.fullmatch(r"\$\{tostring\((.*)\)\}", value)
    if m:
        value = "${" + m.group(1) + "}"

    def queue_suffix(resource):
        name = tf["resource"].get(f"aws_sqs_queue.{resource}", {}).get("name", "")
        return name.replace("${var.name}-", "")

    def one(m):
        ref = m.group(1)
        q = re.fullmatch(r"aws_sqs_queue\.(\w+)\.(arn|url|id|name)", ref)
        if q:
            kind = {"arn": "queue", "url": "queue-url", "id": "queue-url", "name": "queue-name"}[q.group(2)]
            return f"{kind}:{queue_suffix(q.group(1))}"
        f = re.fullmatch(r'aws_lambda_function\.function\[(?:each\.key|"(\w+)")\]\.(arn|function_name)', ref)
        if f:
            return f"function:{f.group(1) or key}"
        st = re.fullmatch(r"aws_apigatewayv2_stage\.(\w+)\.name", ref)
        if st:
            return tf_canon(tf, tf["resource"][f"aws_apigatewayv2_stage.{st.group(1)}"]["name"], key)
        api = re.fullmatch(r"aws_apigatewayv2_api\.(\w+)\.id", ref)
        if api:
            return f"api:{api.group(1)}"
        fixed = {
            "aws_dynamodb_table.chat.arn": "table",
            "aws_dynamodb_table.chat.stream_arn": "table-stream",
            "aws_dynamodb_table.chat.name": "table-name",
            "aws_kms_key.roomcast.arn": "stack-key",
            "aws_s3_bucket.attachments.arn": "bucket",
            "aws_s3_bucket.attachments.bucket": "bucket-name",
            "data.aws_ssm_parameter.webhook_secret[0].arn": "ssm:webhook-secret",
            "local.fanout_function_arn": "function:fanout",
        }
        if ref in fixed:
            return fixed[ref]
        if ref.startswith("var."):
            return param(ref[4:])
        if ref == "each.value.route" and key is not None:
            return tf["locals"]["functions"][key]["route"]
        return "${" + ref + "}"

    return re.sub(r"\$\{([^{}]*)\}", one, value)


def terraform_statements(tf):
    """Every function's role statements, by Sid: {actions, resources, conditional}."""
    functions = tf["locals"].get("functions", {})
    extra = tf["locals"].get("function_statements", {})
    policy = tf["data"].get("aws_iam_policy_document.function", {})
    out = {}
    for name, f in functions.items():
        st = {}

        def add(s, conditional=False, resources=None):
            st[s["sid"]] = {
                "actions": sorted(s["actions"]),
                "resources": sorted(tf_canon(tf, resources or s["resources"], name)),
                "conditional": conditional,
            }

        for s in policy.get("statement", []):
            if s.get("sid") == "ChatTable":
                s = dict(s, actions=[f"dynamodb:{a}" for a in f.get("dynamodb_actions", [])])
            add(s)
        for block in policy.get("dynamic", []):
            d = block["statement"]
            each, content = d["for_each"], d["content"][0]
            if each == "${each.value.manages_websocket ? [1] : []}":
                if f.get("manages_websocket"):
                    add(content)
            elif each == "${local.function_statements[each.key]}":
                for s in extra.get(name, []):
                    add(s)
            elif each == '${each.key == "events" ? data.aws_ssm_parameter.webhook_secret[*].arn : []}':
                if name == "events":
                    add(content, True, ["${data.aws_ssm_parameter.webhook_secret[0].arn}"])
            elif each == "${var.jwt_key_kms_key_arn == null ? [] : [var.jwt_key_kms_key_arn]}":
                add(content, True, ["${var.jwt_key_kms_key_arn}"])
            else:
                raise SystemExit(f"deploy_model.py: unknown dynamic statement for_each {each}")
        out[name] = st
    return out


def hcl_object_json(text):
    """A literal HCL expression as python-hcl2 prints it (`{dynamodb = {Keys = {pk = {S =
    [{prefix = "R#"}]}}}}`) as the JSON value it stands for: bare or quoted keys before `=`,
    string literals, numbers, true/false/null. Anything else (a reference, a function call) is
    not a literal: the text comes back unparsed, so the Rust test reports it."""
    out, i = [], 0
    while i < len(text):
        c = text[i]
        if c == '"':
            j = i + 1
            while j < len(text) and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append(text[i : j + 1])
            i = j + 1
        elif c == "=":
            out.append(":")
            i += 1
        elif c.isalpha() or c == "_":
            m = re.match(r"[A-Za-z_][\w-]*", text[i:])
            word = m.group(0)
            i += len(word)
            if re.match(r"\s*=", text[i:]):
                out.append(json.dumps(word))
            else:
                out.append(word)
        else:
            out.append(c)
            i += 1
    try:
        return json.loads("".join(out))
    except json.JSONDecodeError:
        return text


def tf_filter_pattern(pattern):
    """A filter's `pattern`: `jsonencode({...})` of a literal, or a JSON string."""
    m = re.fullmatch(r"\$\{jsonencode\((.*)\)\}", pattern or "", re.S)
    if m:
        return hcl_object_json(m.group(1))
    try:
        return json.loads(pattern)
    except (TypeError, json.JSONDecodeError):
        return pattern


def terraform_bucket(tf):
    """The attachments bucket's settings, in the same shape as sam_bucket's."""
    res = tf["resource"]
    if "aws_s3_bucket.attachments" not in res:
        return {}
    block = res.get("aws_s3_bucket_public_access_block.attachments", {})
    sse = first(first(res.get("aws_s3_bucket_server_side_encryption_configuration.attachments", {}).get("rule", [])).get("apply_server_side_encryption_by_default", []))
    sse_rule = first(res.get("aws_s3_bucket_server_side_encryption_configuration.attachments", {}).get("rule", []))
    rules = []
    for r in res.get("aws_s3_bucket_lifecycle_configuration.attachments", {}).get("rule", []):
        tag = first(first(r.get("filter", [])).get("tag", []))
        rules.append({
            "id": r.get("id"),
            "enabled": r.get("status") == "Enabled",
            "tag": [tag["key"], tag["value"]] if tag else None,
            "expire_days": first(r.get("expiration", [])).get("days"),
            "abort_multipart_days": first(r.get("abort_incomplete_multipart_upload", [])).get("days_after_initiation"),
        })
    cors = first(res.get("aws_s3_bucket_cors_configuration.attachments", {}).get("cors_rule", []))
    doc = tf["data"].get("aws_iam_policy_document.attachments_tls", {})
    tls = any(
        st.get("effect") == "Deny"
        and st.get("actions") == ["s3:*"]
        and sorted(tf_canon(tf, st.get("resources", []))) == ["bucket", "bucket/*"]
        and first(st.get("condition", [])).get("variable") == "aws:SecureTransport"
        and first(st.get("condition", [])).get("values") == ["false"]
        for st in doc.get("statement", [])
    ) and res.get("aws_s3_bucket_policy.attachments", {}).get("policy") == "${data.aws_iam_policy_document.attachments_tls.json}"
    versioning = first(res.get("aws_s3_bucket_versioning.attachments", {}).get("versioning_configuration", [])).get("status")
    return {
        "public_access_block": [block.get(k) for k in ("block_public_acls", "block_public_policy", "ignore_public_acls", "restrict_public_buckets")],
        "ownership": first(res.get("aws_s3_bucket_ownership_controls.attachments", {}).get("rule", [])).get("object_ownership"),
        "encryption": {"algorithm": sse.get("sse_algorithm"), "key": tf_canon(tf, sse.get("kms_master_key_id")), "bucket_key": sse_rule.get("bucket_key_enabled")},
        "lifecycle": sorted(rules, key=lambda r: r["id"] or ""),
        "cors": {"methods": sorted(cors.get("allowed_methods", [])), "origins": tf_canon(tf, cors.get("allowed_origins"))},
        "tls_only": tls,
        "versioned": versioning == "Enabled",
    }


def terraform_pipeline(tf):
    res = tf["resource"]
    table = res.get("aws_dynamodb_table.chat", {})
    queues = {}
    policies = res.get("aws_sqs_queue_policy.tls", {}).get("for_each", {})
    tls_docs = tf["data"].get("aws_iam_policy_document.queue_tls", {})
    for rname, q in res.items():
        if not rname.startswith("aws_sqs_queue."):
            continue
        key = rname.split(".", 1)[1]
        redrive = None
        m = re.search(r"deadLetterTargetArn = ([\w.]+), maxReceiveCount = (\d+)", q.get("redrive_policy", ""))
        if m:
            redrive = {"target": tf_canon(tf, "${" + m.group(1) + "}"), "max_receive": int(m.group(2))}
        tls = any(
            s.get("effect") == "Deny"
            and s.get("actions") == ["sqs:*"]
            and s.get("resources") == ["${each.value}"]
            and s.get("condition", [{}])[0].get("variable") == "aws:SecureTransport"
            and s["condition"][0].get("values") == ["false"]
            for s in tls_docs.get("statement", [])
        ) and key in policies and tls_docs.get("for_each", {}).get(key) == f"${{aws_sqs_queue.{key}.arn}}"
        queues[q["name"].replace("${var.name}-", "")] = {
            "retention": q.get("message_retention_seconds"),
            "visibility": q.get("visibility_timeout_seconds", 30),
            "kms_key": tf_canon(tf, q.get("kms_master_key_id")),
            "redrive": redrive,
            "tls_only": tls,
        }
    mappings = {}
    for rname, m in res.items():
        if not rname.startswith("aws_lambda_event_source_mapping."):
            continue
        fn = tf_canon(tf, m["function_name"]).split(":", 1)[1]
        on_failure = first(first(m.get("destination_config")).get("on_failure")).get("destination_arn")
        mappings[fn] = {
            "source": tf_canon(tf, m.get("event_source_arn")),
            "starting_position": m.get("starting_position"),
            "batch_size": m.get("batch_size"),
            "batching_window": m.get("maximum_batching_window_in_seconds", 0),
            "bisect": m.get("bisect_batch_on_function_error", False),
            "response_types": m.get("function_response_types", []),
            "retries": m.get("maximum_retry_attempts"),
            "max_record_age": m.get("maximum_record_age_in_seconds"),
            "on_failure": tf_canon(tf, on_failure),
            "max_concurrency": tf_canon(tf, first(m.get("scaling_config")).get("maximum_concurrency")),
            "filters": filters(
                tf_filter_pattern(f.get("pattern")) for f in first(m.get("filter_criteria")).get("filter", [])
            ),
        }
    alarms = {}
    functions = tf["locals"].get("functions", {})
    for rname, a in res.items():
        if not rname.startswith("aws_cloudwatch_metric_alarm."):
            continue
        each = a.get("for_each")
        keys = {
            None: [None],
            "${local.functions}": list(functions),
            "${local.websocket_functions}": [k for k, f in functions.items() if f.get("route")],
        }[each]
        for key in keys:
            name = a["alarm_name"].replace("${var.name}-", "").replace("${each.key}", key or "")
            alarms[name] = {
                "namespace": a.get("namespace"),
                "metric": a.get("metric_name"),
                "statistic": a.get("statistic"),
                "period": a.get("period"),
                "evaluation_periods": a.get("evaluation_periods"),
                "datapoints": a.get("datapoints_to_alarm"),
                "threshold": a.get("threshold"),
                "comparison": a.get("comparison_operator"),
                "missing": a.get("treat_missing_data"),
                "dimensions": {k: tf_canon(tf, v, key) for k, v in a.get("dimensions", {}).items()},
                "notifies": a.get("alarm_actions") == "${var.alarm_actions}"
                and a.get("ok_actions") == "${var.alarm_actions}",
            }
    lam = res.get("aws_lambda_function.function", {})
    return {
        "attachments": terraform_bucket(tf),
        "http_cors": {
            k: sorted(v) if isinstance(v, list) else v
            for k, v in first(res.get("aws_apigatewayv2_api.http", {}).get("cors_configuration", [])).items()
        },
        "stream": {"enabled": table.get("stream_enabled"), "view_type": table.get("stream_view_type")},
        "queues": queues,
        "mappings": mappings,
        "alarms": alarms,
        "statements": terraform_statements(tf),
        "timeouts": {
            name: f.get("timeout") if f.get("timeout") is not None else param("lambda_timeout_seconds")
            for name, f in functions.items()
        },
        "timeout_wiring": lam.get("timeout"),
        "environment": {k: tf_canon(tf, v) for k, v in tf["locals"].get("environment", {}).items()},
        "outputs": sorted(o.replace("_", "").lower() for o in tf.get("output", {})),
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
        "pipeline": sam_pipeline(doc),
    }


def sam_canon(resources, value):
    """A CloudFormation value written as the model's reference names."""
    if isinstance(value, list):
        return [sam_canon(resources, v) for v in value]
    if not isinstance(value, dict):
        return value

    def kind(logical):
        return resources.get(logical, {}).get("Type", "")

    def name_suffix(logical):
        props = resources.get(logical, {}).get("Properties", {})
        name = props.get("QueueName", props.get("Name", {}))
        return name.get("Fn::Sub", "").replace("${AWS::StackName}-", "") if isinstance(name, dict) else name

    def binary(logical):
        return resources.get(logical, {}).get("Metadata", {}).get("BuildProperties", {}).get("Binary")

    def log_group_owner(logical):
        for r in resources.values():
            group = r.get("Properties", {}).get("LoggingConfig", {}).get("LogGroup")
            if r.get("Type") == "AWS::Serverless::Function" and group == {"Ref": logical}:
                return binary_of(r)
        return None

    def binary_of(r):
        return r.get("Metadata", {}).get("BuildProperties", {}).get("Binary")

    def att(logical, attr):
        k = kind(logical)
        if k == "AWS::SQS::Queue":
            return {"Arn": "queue", "QueueName": "queue-name", "QueueUrl": "queue-url"}[attr] + ":" + name_suffix(logical)
        if k == "AWS::DynamoDB::Table":
            return {"Arn": "table", "StreamArn": "table-stream"}[attr]
        if k == "AWS::KMS::Key":
            return "stack-key"
        if k == "AWS::S3::Bucket":
            return "bucket"
        if k == "AWS::Logs::LogGroup":
            return f"log-group:{log_group_owner(logical)}"
        if k == "AWS::Serverless::Function":
            return f"function:{binary(logical)}"
        return "${" + logical + "." + attr + "}"

    def ref(logical):
        k = kind(logical)
        if k == "AWS::SQS::Queue":
            return "queue-url:" + name_suffix(logical)
        if k == "AWS::Serverless::Function":
            return f"function:{binary(logical)}"
        if k == "AWS::DynamoDB::Table":
            return "table-name"
        if k == "AWS::S3::Bucket":
            return "bucket-name"
        if k == "AWS::ApiGatewayV2::Api":
            return "api:" + name_suffix(logical)
        if k == "AWS::Serverless::HttpApi":
            return "api:http"
        if logical in doc_parameters:
            return param(logical)
        return "${" + logical + "}"

    if "Ref" in value:
        return ref(value["Ref"])
    if "Fn::GetAtt" in value:
        return att(*value["Fn::GetAtt"])
    if "Fn::Sub" in value and isinstance(value["Fn::Sub"], str):
        text = value["Fn::Sub"]
        if text.endswith("/*/@connections/*"):
            return "connections"
        if text.endswith(":parameter${JwtKeyParameterName}"):
            return "ssm:jwt-key"
        if text.endswith(":parameter${WebhookSecretParameterName}"):
            return "ssm:webhook-secret"

        def one(m):
            inner = m.group(1)
            if "." in inner and not inner.startswith("AWS::"):
                return att(*inner.split(".", 1))
            return "${" + inner + "}" if inner.startswith("AWS::") else ref(inner)

        return re.sub(r"\$\{([^{}]*)\}", one, text)
    return value


doc_parameters = {}


def sam_filter_pattern(pattern):
    """A filter's `Pattern`: a JSON string (anything else comes back as it is)."""
    try:
        return json.loads(pattern)
    except (TypeError, json.JSONDecodeError):
        return pattern


def sam_bucket(resources, canon):
    """The attachments bucket's settings, in the same shape as terraform_bucket's."""
    bucket = next((l for l, r in resources.items() if r.get("Type") == "AWS::S3::Bucket"), None)
    if bucket is None:
        return {}
    p = resources[bucket].get("Properties", {})
    block = p.get("PublicAccessBlockConfiguration", {})
    sse_rule = first(p.get("BucketEncryption", {}).get("ServerSideEncryptionConfiguration", []))
    sse = sse_rule.get("ServerSideEncryptionByDefault", {})
    rules = []
    for r in p.get("LifecycleConfiguration", {}).get("Rules", []):
        tag = first(r.get("TagFilters", []))
        rules.append({
            "id": r.get("Id"),
            "enabled": r.get("Status") == "Enabled",
            "tag": [tag["Key"], tag["Value"]] if tag else None,
            "expire_days": r.get("ExpirationInDays"),
            "abort_multipart_days": r.get("AbortIncompleteMultipartUpload", {}).get("DaysAfterInitiation"),
        })
    cors = first(p.get("CorsConfiguration", {}).get("CorsRules", []))
    tls = any(
        pol.get("Type") == "AWS::S3::BucketPolicy"
        and pol["Properties"].get("Bucket") == {"Ref": bucket}
        and any(
            st.get("Effect") == "Deny"
            and st.get("Principal") == "*"
            and st.get("Action") == "s3:*"
            and sorted(canon(st.get("Resource", []))) == ["bucket", "bucket/*"]
            and st.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}
            for st in pol["Properties"]["PolicyDocument"]["Statement"]
        )
        for pol in resources.values()
    )
    return {
        "public_access_block": [block.get(k) for k in ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets")],
        "ownership": first(p.get("OwnershipControls", {}).get("Rules", [])).get("ObjectOwnership"),
        "encryption": {"algorithm": sse.get("SSEAlgorithm"), "key": canon(sse.get("KMSMasterKeyID")), "bucket_key": sse_rule.get("BucketKeyEnabled")},
        "lifecycle": sorted(rules, key=lambda r: r["id"] or ""),
        "cors": {"methods": sorted(cors.get("AllowedMethods", [])), "origins": canon(cors.get("AllowedOrigins"))},
        "tls_only": tls,
        "versioned": p.get("VersioningConfiguration", {}).get("Status") == "Enabled",
    }


def sam_pipeline(doc):
    resources = doc.get("Resources", {})
    doc_parameters.clear()
    doc_parameters.update(doc.get("Parameters", {}))
    canon = lambda v: sam_canon(resources, v)  # noqa: E731
    table = next((r["Properties"] for r in resources.values() if r.get("Type") == "AWS::DynamoDB::Table"), {})
    stream = table.get("StreamSpecification")
    queues = {}
    for logical, r in resources.items():
        if r.get("Type") != "AWS::SQS::Queue":
            continue
        p = r.get("Properties", {})
        redrive = p.get("RedrivePolicy")
        tls = any(
            pol.get("Type") == "AWS::SQS::QueuePolicy"
            and pol["Properties"].get("Queues") == [{"Ref": logical}]
            and any(
                st.get("Effect") == "Deny"
                and st.get("Principal") == "*"
                and st.get("Action") == "sqs:*"
                and st.get("Resource") == {"Fn::GetAtt": [logical, "Arn"]}
                and st.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}
                for st in pol["Properties"]["PolicyDocument"]["Statement"]
            )
            for pol in resources.values()
        )
        queues[canon({"Ref": logical}).split(":", 1)[1]] = {
            "retention": p.get("MessageRetentionPeriod"),
            "visibility": p.get("VisibilityTimeout", 30),
            "kms_key": canon(p.get("KmsMasterKeyId")),
            "redrive": redrive
            and {"target": canon(redrive.get("deadLetterTargetArn")), "max_receive": redrive.get("maxReceiveCount")},
            "tls_only": tls,
        }
    mappings = {}
    for r in resources.values():
        if r.get("Type") != "AWS::Lambda::EventSourceMapping":
            continue
        p = r["Properties"]
        mappings[canon(p["FunctionName"]).split(":", 1)[1]] = {
            "source": canon(p.get("EventSourceArn")),
            "starting_position": p.get("StartingPosition"),
            "batch_size": p.get("BatchSize"),
            "batching_window": p.get("MaximumBatchingWindowInSeconds", 0),
            "bisect": p.get("BisectBatchOnFunctionError", False),
            "response_types": p.get("FunctionResponseTypes", []),
            "retries": p.get("MaximumRetryAttempts"),
            "max_record_age": p.get("MaximumRecordAgeInSeconds"),
            "on_failure": canon(p.get("DestinationConfig", {}).get("OnFailure", {}).get("Destination")),
            "max_concurrency": canon(p.get("ScalingConfig", {}).get("MaximumConcurrency")),
            "filters": filters(sam_filter_pattern(f.get("Pattern")) for f in p.get("FilterCriteria", {}).get("Filters", [])),
        }
    alarms = {}
    topic = {"Fn::If": ["HasAlarmTopic", [{"Ref": "AlarmTopicArn"}], {"Ref": "AWS::NoValue"}]}
    for r in resources.values():
        if r.get("Type") != "AWS::CloudWatch::Alarm":
            continue
        p = r["Properties"]
        alarms[canon(p["AlarmName"]).replace("${AWS::StackName}-", "")] = {
            "namespace": p.get("Namespace"),
            "metric": p.get("MetricName"),
            "statistic": p.get("Statistic"),
            "period": p.get("Period"),
            "evaluation_periods": p.get("EvaluationPeriods"),
            "datapoints": p.get("DatapointsToAlarm"),
            "threshold": p.get("Threshold"),
            "comparison": p.get("ComparisonOperator"),
            "missing": p.get("TreatMissingData"),
            "dimensions": {d["Name"]: canon(d["Value"]) for d in p.get("Dimensions", [])},
            "notifies": p.get("AlarmActions") == topic and p.get("OKActions") == topic,
        }
    statements, timeouts = {}, {}
    default_timeout = doc.get("Globals", {}).get("Function", {}).get("Timeout")
    for r in resources.values():
        if r.get("Type") != "AWS::Serverless::Function":
            continue
        binary = r.get("Metadata", {}).get("BuildProperties", {}).get("Binary")
        props = r.get("Properties", {})
        timeouts[binary] = props.get("Timeout", default_timeout)
        role = resources.get(props.get("Role", {}).get("Fn::GetAtt", [None])[0], {}).get("Properties", {})
        st = {}
        for pol in role.get("Policies", []):
            for s in pol.get("PolicyDocument", {}).get("Statement", []):
                conditional = "Fn::If" in s
                if conditional:
                    s = s["Fn::If"][1]
                acts = s.get("Action", [])
                res = s.get("Resource", [])
                st[s.get("Sid")] = {
                    "actions": sorted([acts] if isinstance(acts, str) else acts),
                    "resources": sorted(canon(res if isinstance(res, list) else [res])),
                    "conditional": conditional,
                }
        statements[binary] = st
    env = doc.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {})
    return {
        "attachments": sam_bucket(resources, canon),
        "http_cors": {
            re.sub(r"(?<!^)(?=[A-Z])", "_", k).lower(): sorted(v) if isinstance(v, list) else v
            for k, v in next(
                (r["Properties"] for r in resources.values() if r.get("Type") == "AWS::Serverless::HttpApi"), {}
            ).get("CorsConfiguration", {}).items()
        },
        "stream": {"enabled": stream is not None, "view_type": (stream or {}).get("StreamViewType")},
        "queues": queues,
        "mappings": mappings,
        "alarms": alarms,
        "statements": statements,
        "timeouts": timeouts,
        "environment": {k: canon(v) for k, v in env.items()},
        "outputs": sorted(o.lower() for o in doc.get("Outputs", {})),
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
