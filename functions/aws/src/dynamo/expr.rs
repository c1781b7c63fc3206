//! Expressions: the placeholders of one request's expressions ([`Expr`]), and the update
//! expression of an amendment.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use roomcast_core::attachments::AttachmentView;
use roomcast_core::protocol::{MessageView, ReactionView, ReplyView};
use roomcast_core::store::rules::apply_amendment;
use roomcast_core::store::{Amendment, StoreError};

use super::codec::{json_attr, message_attributes, n};
use super::schema::{ATTR_REACTED_TS, ATTR_REACTIONS};

/// Placeholders of one expression set: `#attr` for names (every attribute goes through one, so
/// reserved words like `ttl`, `from` and `name` need no care) and `:vN` for values.
#[derive(Default)]
pub(super) struct Expr {
    /// `#attr` → attribute name.
    names: HashMap<String, String>,
    /// `:vN` → value.
    values: HashMap<String, AttributeValue>,
}

impl Expr {
    /// The placeholder of attribute name `attr`.
    pub(super) fn name(&mut self, attr: &str) -> String {
        let placeholder = format!("#{attr}");
        self.names.insert(placeholder.clone(), attr.to_owned());
        placeholder
    }

    /// A placeholder for `value`.
    pub(super) fn value(&mut self, value: AttributeValue) -> String {
        let placeholder = format!(":v{}", self.values.len());
        self.values.insert(placeholder.clone(), value);
        placeholder
    }

    /// The names to send. DynamoDB rejects empty maps, so an unused one is not sent.
    pub(super) fn names(&self) -> Option<HashMap<String, String>> {
        (!self.names.is_empty()).then(|| self.names.clone())
    }

    /// The values to send, unless there are none (see [`Expr::names`]).
    pub(super) fn values(&self) -> Option<HashMap<String, AttributeValue>> {
        (!self.values.is_empty()).then(|| self.values.clone())
    }
}

/// The UpdateItem for an edit or a delete, derived from [`apply_amendment`] so that edits and
/// tombstones mean the same here as in every other backend: it is applied to two messages that
/// differ in every amendable attribute. An attribute that comes out equal in both no longer
/// depends on its old value, so the amendment sets it (or removes it, when absent); one that still
/// differs is kept as stored. A reaction depends on the reactions stored, so it has no such
/// update: [`reaction_update`].
pub(super) fn amendment_update(change: Amendment) -> Result<(String, Expr), StoreError> {
    let reply_to = Some(Box::new(ReplyView {
        seq: 1,
        from: "a".to_owned(),
        preview: None,
        deleted: false,
    }));
    let probe = |body: Option<&str>,
                 meta,
                 edited_ts,
                 deleted,
                 attachments,
                 reactions,
                 reply_to: &Option<Box<ReplyView>>| MessageView {
        room: String::new(),
        seq: 1,
        id: String::new(),
        from: String::new(),
        name: None,
        role: None,
        via: None,
        body: body.map(str::to_owned),
        meta,
        ts: 0,
        edited_ts,
        deleted,
        attachments,
        reply_to: reply_to.clone(),
        reactions,
    };
    let attachment = AttachmentView {
        id: "att_a".to_owned(),
        name: "a".to_owned(),
        size: 1,
        content_type: "text/plain".to_owned(),
        width: None,
        height: None,
    };
    let mut a = probe(
        Some("a"),
        Some(serde_json::json!(1)),
        Some(1),
        false,
        vec![attachment],
        vec![ReactionView {
            emoji: "a".to_owned(),
            count: 1,
            users: vec!["a".to_owned()],
        }],
        &reply_to,
    );
    let mut b = probe(None, None, Some(2), true, Vec::new(), Vec::new(), &None);
    let (before_a, before_b) = (message_attributes(&a)?, message_attributes(&b)?);
    // Whether each probe changed shows in the attributes compared below.
    let _ = apply_amendment(&mut a, change.clone());
    let _ = apply_amendment(&mut b, change);
    let (after_a, after_b) = (message_attributes(&a)?, message_attributes(&b)?);

    let mut amendable: Vec<&String> = before_a
        .keys()
        .chain(before_b.keys())
        .filter(|attr| before_a.get(*attr) != before_b.get(*attr))
        .collect();
    amendable.sort();
    amendable.dedup();

    let mut x = Expr::default();
    let (mut set, mut remove) = (Vec::new(), Vec::new());
    for attr in amendable {
        if after_a.get(attr) != after_b.get(attr) {
            continue;
        }
        match after_a.get(attr) {
            Some(value) => set.push(format!("{} = {}", x.name(attr), x.value(value.clone()))),
            None => remove.push(x.name(attr)),
        }
    }
    let mut update = String::new();
    if !set.is_empty() {
        update = format!("SET {}", set.join(", "));
    }
    if !remove.is_empty() {
        update = format!("{update} REMOVE {}", remove.join(", "));
    }
    if update.is_empty() {
        return Err(StoreError::Other("the amendment changes nothing".into()));
    }
    Ok((update.trim().to_owned(), x))
}

/// The UpdateItem storing `after`'s reactions (changed at `at_ms`) over the message as read,
/// `before`: conditioned on the stored reactions still being `before`'s, so a concurrent
/// reaction is never overwritten (the caller reads again and retries).
pub(super) fn reaction_update(
    before: &MessageView,
    after: &MessageView,
    at_ms: u64,
    x: &mut Expr,
) -> Result<(String, String), StoreError> {
    let attr = x.name(ATTR_REACTIONS);
    let reacted = format!("{} = {}", x.name(ATTR_REACTED_TS), x.value(n(at_ms)));
    let update = if after.reactions.is_empty() {
        format!("SET {reacted} REMOVE {attr}")
    } else {
        let value = x.value(json_attr(&after.reactions)?);
        format!("SET {attr} = {value}, {reacted}")
    };
    let condition = if before.reactions.is_empty() {
        format!("attribute_not_exists({attr})")
    } else {
        format!("{attr} = {}", x.value(json_attr(&before.reactions)?))
    };
    Ok((update, condition))
}

#[cfg(test)]
mod tests {
    use super::super::codec::s;
    use super::*;

    #[test]
    fn amendments_follow_apply_amendment() {
        let (edit, x) = amendment_update(Amendment::Edit {
            body: "new".into(),
            at_ms: 7,
        })
        .unwrap();
        assert_eq!(edit, "SET #body = :v0, #edited_ts = :v1");
        assert_eq!(x.values[":v0"], s("new"));
        assert_eq!(x.values[":v1"], n(7));
        let (delete, x) = amendment_update(Amendment::Delete {
            at_ms: 9,
            moderator: None,
        })
        .unwrap();
        assert_eq!(
            delete,
            "SET #deleted = :v0, #edited_ts = :v1 REMOVE #att, #body, #meta, #reactions, #reply_to"
        );
        assert_eq!(x.values[":v0"], AttributeValue::Bool(true));
    }
}
