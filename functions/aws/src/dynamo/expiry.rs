//! Expiry: the lifetime of connection items, and the rule every read and conditional write
//! follows because DynamoDB deletes expired items lazily (within days): an item whose `ttl` is
//! not in the future is absent.

use std::time::{SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::types::AttributeValue;
use roomcast_core::limits::DEFAULT_MAX_CONNECTION_MS;

use super::codec::n;
use super::expr::Expr;
use super::schema::{ATTR_PK, ATTR_TTL, Item};

/// Margin on top of API Gateway's maximum connection duration before a connection's items
/// expire: covers clock skew and a `$disconnect` that arrives late.
pub const CONNECTION_TTL_MARGIN_SECS: u64 = 10 * 60;
/// Lifetime of connection, index, subscription and status items: 2 h + 10 min.
pub const CONNECTION_TTL_SECS: u64 = DEFAULT_MAX_CONNECTION_MS / 1000 + CONNECTION_TTL_MARGIN_SECS;

/// The clock, in epoch seconds (the unit of `ttl`).
pub(super) fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A connection's items expire [`CONNECTION_TTL_SECS`] after it was made. The later of its
/// `connected_at` and our clock anchors it, so a skewed (or synthetic) `connected_at` can never
/// expire a live connection early; the price is at most the skew in extra retention.
pub(super) fn connection_ttl(connected_at_ms: u64) -> u64 {
    (connected_at_ms / 1000).max(now_secs()) + CONNECTION_TTL_SECS
}

/// Whether DynamoDB would still keep the item: no `ttl`, a `ttl` in the future, or one that is
/// not a number (DynamoDB ignores those too).
pub(super) fn is_live(item: &Item, now: u64) -> bool {
    match item.get(ATTR_TTL) {
        Some(AttributeValue::N(ttl)) => ttl.parse::<u64>().map_or(true, |ttl| ttl > now),
        _ => true,
    }
}

/// Condition: the item exists and has not expired.
pub(super) fn live_condition(x: &mut Expr, now: u64) -> String {
    let ttl = x.name(ATTR_TTL);
    format!(
        "attribute_exists({}) AND (attribute_not_exists({ttl}) OR {ttl} > {})",
        x.name(ATTR_PK),
        x.value(n(now))
    )
}

#[cfg(test)]
mod tests {
    use super::super::schema::key;
    use super::*;

    #[test]
    fn expired_items_are_not_live() {
        let mut item = key("p", "s");
        assert!(is_live(&item, 100));
        item.insert(ATTR_TTL.into(), n(100));
        assert!(!is_live(&item, 100));
        assert!(is_live(&item, 99));
    }
}
