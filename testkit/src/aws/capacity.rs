//! DynamoDB capacity metering for the cost benchmark and the cost tests (`roomcast-testkit`, feature `aws`).
//!
//! [`Meter`] is an SDK interceptor: it makes every DynamoDB request ask for
//! `"ReturnConsumedCapacity": "TOTAL"` (added to the JSON body before signing when the caller did
//! not ask), and records each request with its response ([`Call`]): the operation (from
//! `X-Amz-Target`), both JSON bodies and the units the backend reported.
//!
//! Emulators do not bill like DynamoDB (moto reports flat placeholders: 0.5 per read or write
//! whatever the size, nothing for transactions), so [`bill`] also applies DynamoDB's on-demand
//! rules to the items each request actually read or wrote ([`Billed`]):
//!
//! - reads: 1 RRU per 4 KB, strongly consistent; 0.5 eventually consistent. GetItem: the item
//!   (an absent one still costs one unit); Query and Scan: the total size of the items read, in
//!   one sum per request (page); BatchGetItem: each item rounded up on its own;
//! - writes: 1 WRU per 1 KB of the item (PutItem: the item sent; UpdateItem: the item after the
//!   update, read back; DeleteItem: the old item when returned, else one unit); BatchWriteItem:
//!   each item on its own; TransactWriteItems: 2 WRU per 1 KB for every item in it, committed
//!   or cancelled;
//! - item size: attribute names plus values (strings and binaries by length, numbers 1 byte per
//!   two significant digits plus 1, booleans and nulls 1, lists and maps 3 plus 1 per element
//!   plus the elements and map keys).
#![allow(
    clippy::panic,
    reason = "test support: an unreadable emulator answer is a test failure"
)]

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::interceptors::{
    AfterDeserializationInterceptorContextRef, BeforeTransmitInterceptorContextMut,
};
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::types::AttributeValue;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::config_bag::{Storable, StoreReplace};
use serde_json::{Map, Value};

/// Operations that accept `ReturnConsumedCapacity`.
const METERED: &[&str] = &[
    "GetItem",
    "PutItem",
    "UpdateItem",
    "DeleteItem",
    "Query",
    "Scan",
    "BatchGetItem",
    "BatchWriteItem",
    "TransactGetItems",
    "TransactWriteItems",
    "ExecuteStatement",
    "BatchExecuteStatement",
    "ExecuteTransaction",
];

/// One DynamoDB request (one attempt) and its answer.
#[derive(Debug, Clone)]
pub struct Call {
    /// `GetItem`, `Query`, …
    pub operation: String,
    /// The request body as sent.
    pub request: Value,
    /// The response body (an error's too).
    pub response: Value,
    /// HTTP status of the response.
    pub status: u16,
    /// Read units the backend reported (ReturnConsumedCapacity).
    pub reported_read: f64,
    /// Write units the backend reported.
    pub reported_write: f64,
}

/// The request in flight, kept in the operation's config bag between signing and the answer.
#[derive(Debug, Clone)]
struct InFlight {
    operation: String,
    request: Value,
}

impl Storable for InFlight {
    type Storer = StoreReplace<Self>;
}

/// Records every DynamoDB call of the clients it is installed on (see the module doc).
#[derive(Debug, Default, Clone)]
pub struct Meter(Arc<Mutex<Vec<Call>>>);

impl Meter {
    /// Every call since the last take, in the order answered.
    pub fn take(&self) -> Vec<Call> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

fn is_write(operation: &str) -> bool {
    matches!(
        operation,
        "PutItem" | "UpdateItem" | "DeleteItem" | "BatchWriteItem" | "TransactWriteItems"
    )
}

impl Intercept for Meter {
    fn name(&self) -> &'static str {
        "CapacityMeter"
    }

    fn modify_before_signing(
        &self,
        context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let request = context.request_mut();
        // DynamoDB's JSON protocol names the operation in `X-Amz-Target: DynamoDB_20120810.Op`.
        let Some(operation) = request
            .headers()
            .get("x-amz-target")
            .and_then(|t| t.split('.').nth(1))
            .map(str::to_owned)
        else {
            return Ok(());
        };
        let mut body: Value = match request.body().bytes() {
            Some(bytes) if !bytes.is_empty() => serde_json::from_slice(bytes)?,
            _ => Value::Object(Map::new()),
        };
        if METERED.contains(&operation.as_str())
            && let Some(fields) = body.as_object_mut()
            && !fields.contains_key("ReturnConsumedCapacity")
        {
            fields.insert("ReturnConsumedCapacity".into(), "TOTAL".into());
            let bytes = serde_json::to_vec(&body)?;
            request
                .headers_mut()
                .insert("content-length", bytes.len().to_string());
            *request.body_mut() = SdkBody::from(bytes);
        }
        cfg.interceptor_state().store_put(InFlight {
            operation,
            request: body,
        });
        Ok(())
    }

    fn read_after_deserialization(
        &self,
        context: &AfterDeserializationInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let Some(sent) = cfg.load::<InFlight>().cloned() else {
            return Ok(());
        };
        let response = context.response();
        let body: Value = response
            .body()
            .bytes()
            .filter(|b| !b.is_empty())
            .and_then(|b| serde_json::from_slice(b).ok())
            .unwrap_or(Value::Null);
        let (mut read, mut write) = (0.0, 0.0);
        let reported = match &body["ConsumedCapacity"] {
            Value::Array(list) => list.clone(),
            Value::Null => Vec::new(),
            one => vec![one.clone()],
        };
        for c in &reported {
            let units = |field: &str| c[field].as_f64();
            match (units("ReadCapacityUnits"), units("WriteCapacityUnits")) {
                (None, None) if is_write(&sent.operation) => {
                    write += units("CapacityUnits").unwrap_or(0.0);
                }
                (None, None) => read += units("CapacityUnits").unwrap_or(0.0),
                (r, w) => {
                    read += r.unwrap_or(0.0);
                    write += w.unwrap_or(0.0);
                }
            }
        }
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Call {
                operation: sent.operation,
                request: sent.request,
                response: body,
                status: response.status().as_u16(),
                reported_read: read,
                reported_write: write,
            });
        Ok(())
    }
}

/// What one call costs under DynamoDB's on-demand rules, next to what the backend reported.
#[derive(Debug, Clone, PartialEq)]
pub struct Billed {
    /// The operation.
    pub operation: String,
    /// Read request units by item size.
    pub read: f64,
    /// Write request units by item size.
    pub write: f64,
    /// Read units the backend reported.
    pub reported_read: f64,
    /// Write units the backend reported.
    pub reported_write: f64,
    /// Items read (reads) or written (writes).
    pub items: usize,
    /// Bytes of those items, by DynamoDB's size rules.
    pub bytes: usize,
}

/// Totals per operation: calls, items, bytes, units (size-based and reported).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Tally {
    /// Requests.
    pub calls: u64,
    /// Items read or written.
    pub items: u64,
    /// Bytes of those items.
    pub bytes: u64,
    /// Size-based read request units.
    pub read: f64,
    /// Size-based write request units.
    pub write: f64,
    /// Reported read units.
    pub reported_read: f64,
    /// Reported write units.
    pub reported_write: f64,
}

impl Tally {
    /// Adds one billed call.
    pub fn add(&mut self, b: &Billed) {
        self.calls += 1;
        self.items += b.items as u64;
        self.bytes += b.bytes as u64;
        self.read += b.read;
        self.write += b.write;
        self.reported_read += b.reported_read;
        self.reported_write += b.reported_write;
    }
}

/// Adds up billed calls per operation.
pub fn tally<'a>(billed: impl IntoIterator<Item = &'a Billed>) -> BTreeMap<String, Tally> {
    let mut per_op = BTreeMap::<String, Tally>::new();
    for b in billed {
        per_op.entry(b.operation.clone()).or_default().add(b);
    }
    per_op
}

/// Applies DynamoDB's on-demand billing rules to `calls` (see the module doc). Items an update
/// wrote are read back through `client` (strongly consistent), so call this right after the
/// calls, before anything else changes those items.
pub async fn bill(calls: &[Call], client: &Client) -> Vec<Billed> {
    let mut billed = Vec::with_capacity(calls.len());
    for call in calls {
        let (read, write, items, bytes) = units(call, client).await;
        billed.push(Billed {
            operation: call.operation.clone(),
            read,
            write,
            reported_read: call.reported_read,
            reported_write: call.reported_write,
            items,
            bytes,
        });
    }
    billed
}

fn read_units(bytes: usize, consistent: bool) -> f64 {
    let blocks = bytes.div_ceil(4096).max(1) as f64;
    if consistent { blocks } else { blocks / 2.0 }
}

fn write_units(bytes: usize) -> f64 {
    bytes.div_ceil(1024).max(1) as f64
}

fn items_of(v: &Value) -> impl Iterator<Item = &Map<String, Value>> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_object)
}

/// (read units, write units, items, bytes) of one call.
async fn units(call: &Call, client: &Client) -> (f64, f64, usize, usize) {
    let (req, resp) = (&call.request, &call.response);
    let ok = call.status < 300;
    let consistent = req["ConsistentRead"].as_bool() == Some(true);
    match call.operation.as_str() {
        "GetItem" if ok => {
            let size = resp["Item"].as_object().map_or(0, item_size);
            let found = usize::from(size > 0);
            (read_units(size, consistent), 0.0, found, size)
        }
        "Query" | "Scan" if ok => {
            let sizes: Vec<usize> = items_of(&resp["Items"]).map(item_size).collect();
            let total = sizes.iter().sum();
            (read_units(total, consistent), 0.0, sizes.len(), total)
        }
        "BatchGetItem" if ok => {
            let (mut read, mut items, mut bytes) = (0.0, 0, 0);
            let requested = req["RequestItems"].as_object().cloned().unwrap_or_default();
            for (table, asked) in &requested {
                let consistent = asked["ConsistentRead"].as_bool() == Some(true);
                let found: Vec<usize> =
                    items_of(&resp["Responses"][table]).map(item_size).collect();
                let missing = asked["Keys"]
                    .as_array()
                    .map_or(0, Vec::len)
                    .saturating_sub(found.len());
                read += found
                    .iter()
                    .map(|&s| read_units(s, consistent))
                    .sum::<f64>()
                    + missing as f64 * read_units(0, consistent);
                items += found.len();
                bytes += found.iter().sum::<usize>();
            }
            (read, 0.0, items, bytes)
        }
        // A failed conditional write is billed too (by the existing item), so writes count
        // whatever the answer.
        "PutItem" => {
            let size = req["Item"].as_object().map_or(0, item_size);
            (0.0, write_units(size), 1, size)
        }
        "UpdateItem" => {
            let size = size_after(client, req).await;
            (0.0, write_units(size), 1, size)
        }
        "DeleteItem" => {
            let size = resp["Attributes"].as_object().map_or(0, item_size);
            (0.0, write_units(size), 1, size)
        }
        "BatchWriteItem" => {
            let (mut write, mut items, mut bytes) = (0.0, 0, 0);
            for requests in req["RequestItems"]
                .as_object()
                .into_iter()
                .flat_map(|m| m.values())
            {
                for r in requests.as_array().into_iter().flatten() {
                    let size = r["PutRequest"]["Item"].as_object().map_or(0, item_size);
                    write += write_units(size);
                    items += 1;
                    bytes += size;
                }
            }
            (0.0, write, items, bytes)
        }
        "TransactWriteItems" => {
            let (mut write, mut items, mut bytes) = (0.0, 0, 0);
            for action in req["TransactItems"].as_array().into_iter().flatten() {
                let size = if let Some(item) = action["Put"]["Item"].as_object() {
                    item_size(item)
                } else if action["Update"].is_object() {
                    size_after(client, &action["Update"]).await
                } else {
                    0
                };
                write += 2.0 * write_units(size);
                items += 1;
                bytes += size;
            }
            (0.0, write, items, bytes)
        }
        _ => (0.0, 0.0, 0, 0),
    }
}

/// Size of the item `request` (`TableName`, `Key`) names, as it is now.
async fn size_after(client: &Client, request: &Value) -> usize {
    let table = request["TableName"]
        .as_str()
        .unwrap_or_else(|| panic!("no TableName in {request}"));
    let key: HashMap<String, AttributeValue> = request["Key"]
        .as_object()
        .unwrap_or_else(|| panic!("no Key in {request}"))
        .iter()
        .map(|(name, v)| {
            let value = match (v["S"].as_str(), v["N"].as_str()) {
                (Some(s), _) => AttributeValue::S(s.to_owned()),
                (None, Some(n)) => AttributeValue::N(n.to_owned()),
                _ => panic!("unsupported key attribute {v}"),
            };
            (name.clone(), value)
        })
        .collect();
    let out = client
        .get_item()
        .table_name(table)
        .set_key(Some(key))
        .consistent_read(true)
        .send()
        .await
        .unwrap_or_else(|e| panic!("reading back {request}: {e:?}"));
    out.item().map_or(0, typed_item_size)
}

/// Size of an item in DynamoDB JSON (`{"name": {"S": "…"}, …}`), by DynamoDB's rules.
pub fn item_size(item: &Map<String, Value>) -> usize {
    item.iter()
        .map(|(name, v)| name.len() + value_size(v))
        .sum()
}

fn value_size(v: &Value) -> usize {
    let Some((kind, inner)) = v.as_object().and_then(|o| o.iter().next()) else {
        return 0;
    };
    let strings = || {
        inner
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
    };
    match kind.as_str() {
        "S" => inner.as_str().map_or(0, str::len),
        "N" => inner.as_str().map_or(0, number_size),
        "B" => inner.as_str().map_or(0, base64_len),
        "BOOL" | "NULL" => 1,
        "SS" => strings().map(str::len).sum(),
        "NS" => strings().map(number_size).sum(),
        "BS" => strings().map(base64_len).sum(),
        "L" => 3 + items_sizes(inner.as_array().into_iter().flatten().map(value_size)),
        "M" => {
            3 + items_sizes(
                inner
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(k, e)| k.len() + value_size(e)),
            )
        }
        _ => 0,
    }
}

/// Elements of a list or map: 1 byte of overhead each.
fn items_sizes(sizes: impl Iterator<Item = usize>) -> usize {
    sizes.map(|s| s + 1).sum()
}

fn base64_len(b64: &str) -> usize {
    let padding = b64.bytes().rev().take_while(|&b| b == b'=').count();
    (b64.len() / 4 * 3).saturating_sub(padding)
}

/// 1 byte per two significant digits, plus 1.
fn number_size(n: &str) -> usize {
    let mantissa = n.split(['e', 'E']).next().unwrap_or_default();
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let significant = digits.trim_start_matches('0').trim_end_matches('0').len();
    significant.max(1).div_ceil(2) + 1
}

/// Size of an SDK item, by the same rules as [`item_size`].
pub fn typed_item_size(item: &HashMap<String, AttributeValue>) -> usize {
    item.iter()
        .map(|(name, v)| name.len() + typed_value_size(v))
        .sum()
}

fn typed_value_size(v: &AttributeValue) -> usize {
    match v {
        AttributeValue::S(s) => s.len(),
        AttributeValue::N(n) => number_size(n),
        AttributeValue::B(b) => b.as_ref().len(),
        AttributeValue::Bool(_) | AttributeValue::Null(_) => 1,
        AttributeValue::Ss(ss) => ss.iter().map(String::len).sum(),
        AttributeValue::Ns(ns) => ns.iter().map(|n| number_size(n)).sum(),
        AttributeValue::Bs(bs) => bs.iter().map(|b| b.as_ref().len()).sum(),
        AttributeValue::L(l) => 3 + items_sizes(l.iter().map(typed_value_size)),
        AttributeValue::M(m) => {
            3 + items_sizes(m.iter().map(|(k, e)| k.len() + typed_value_size(e)))
        }
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sizes_follow_dynamodb_rules() {
        // Names count; strings by UTF-8 length; numbers by significant digits.
        let item = json!({
            "pk": {"S": "C#abc"},
            "n": {"N": "12000"},
            "f": {"N": "-0.0012345"},
            "ok": {"BOOL": true},
            "l": {"L": [{"S": "ab"}, {"N": "7"}]},
            "m": {"M": {"k": {"S": "é"}}},
            "b": {"B": "AAEC"},
        });
        let size = item_size(item.as_object().unwrap());
        let expected = (2 + 5) // pk
            + (1 + 2) // n: "12" → 1 + 1
            + (1 + 4) // f: "12345" → 3 + 1
            + (2 + 1) // ok
            + (1 + 3 + (2 + 1) + (2 + 1)) // l
            + (1 + 3 + (1 + 2 + 1)) // m: key "k", "é" is 2 bytes
            + (1 + 3); // b: 3 bytes
        assert_eq!(size, expected);
        let typed = HashMap::from([
            ("pk".to_owned(), AttributeValue::S("C#abc".into())),
            ("n".to_owned(), AttributeValue::N("12000".into())),
            ("f".to_owned(), AttributeValue::N("-0.0012345".into())),
            ("ok".to_owned(), AttributeValue::Bool(true)),
            (
                "l".to_owned(),
                AttributeValue::L(vec![
                    AttributeValue::S("ab".into()),
                    AttributeValue::N("7".into()),
                ]),
            ),
            (
                "m".to_owned(),
                AttributeValue::M(HashMap::from([(
                    "k".to_owned(),
                    AttributeValue::S("é".into()),
                )])),
            ),
            (
                "b".to_owned(),
                AttributeValue::B(aws_sdk_dynamodb::primitives::Blob::new(vec![0, 1, 2])),
            ),
        ]);
        assert_eq!(typed_item_size(&typed), expected);
    }

    #[test]
    fn units_round_up_per_request() {
        assert_eq!(read_units(0, true), 1.0);
        assert_eq!(read_units(4096, true), 1.0);
        assert_eq!(read_units(4097, true), 2.0);
        assert_eq!(read_units(4097, false), 1.0);
        assert_eq!(read_units(100, false), 0.5);
        assert_eq!(write_units(1), 1.0);
        assert_eq!(write_units(1025), 2.0);
    }
}
