//! The [`DeskDirectory`]: the support desk's tenant-wide records, one partition per tenant and
//! kind (`DESK#{tenant}#{kind}`) with the record's key as the sort key, so a kind's records are
//! one Query in key order. Compare-and-set is a condition on the stored `version`, so of two
//! writers of one version DynamoDB lets exactly one through.

use roomcast_core::store::desk::MAX_DESK_RECORDS;
use roomcast_core::store::{DeskDirectory, DeskKind, DeskRecord, StoreError};

use super::DynamoStore;
use super::calls::Written;
use super::codec::{Fields, n, s};
use super::expr::Expr;
use super::schema::{ATTR_DOC, ATTR_PK, ATTR_SK, ATTR_VERSION, Item, desk_pk, key};

fn desk_item(tenant: &str, kind: DeskKind, record: &DeskRecord) -> Item {
    let mut item = key(&desk_pk(tenant, kind), &record.key);
    item.insert(ATTR_VERSION.into(), n(record.version));
    item.insert(ATTR_DOC.into(), s(record.doc.as_str()));
    item
}

fn decode_desk_record(item: &Item) -> Result<DeskRecord, StoreError> {
    let f = Fields(item);
    Ok(DeskRecord {
        key: f.s(ATTR_SK)?,
        version: f.u64(ATTR_VERSION)?,
        doc: f.s(ATTR_DOC)?,
    })
}

#[async_trait::async_trait]
impl DeskDirectory for DynamoStore {
    async fn desk_record(
        &self,
        tenant: &str,
        kind: DeskKind,
        key: &str,
    ) -> Result<Option<DeskRecord>, StoreError> {
        self.get(&desk_pk(tenant, kind), key)
            .await?
            .map(|item| decode_desk_record(&item))
            .transpose()
    }

    async fn desk_records(
        &self,
        tenant: &str,
        kind: DeskKind,
        limit: usize,
    ) -> Result<Vec<DeskRecord>, StoreError> {
        let limit = limit.min(MAX_DESK_RECORDS);
        if limit == 0 {
            return Ok(Vec::new());
        }
        self.query_page(&desk_pk(tenant, kind), true, limit)
            .await?
            .iter()
            .map(decode_desk_record)
            .collect()
    }

    async fn put_desk_record(
        &self,
        tenant: &str,
        kind: DeskKind,
        record: &DeskRecord,
    ) -> Result<(), StoreError> {
        let mut x = Expr::default();
        let condition = match record.version {
            0 => {
                return Err(StoreError::Conflict(format!(
                    "desk record {}: versions start at 1",
                    record.key
                )));
            }
            1 => format!("attribute_not_exists({})", x.name(ATTR_PK)),
            v => format!("{} = {}", x.name(ATTR_VERSION), x.value(n(v - 1))),
        };
        match self
            .put(desk_item(tenant, kind, record), Some((condition, x)))
            .await?
        {
            Written::Done(_) => Ok(()),
            Written::ConditionFailed => Err(StoreError::Conflict(format!(
                "desk record {} is not at version {}",
                record.key,
                record.version.saturating_sub(1)
            ))),
        }
    }

    async fn remove_desk_record(
        &self,
        tenant: &str,
        kind: DeskKind,
        key: &str,
        version: u64,
    ) -> Result<(), StoreError> {
        let mut x = Expr::default();
        // An absent record passes: removing nothing is fine.
        let condition = format!(
            "attribute_not_exists({}) OR {} = {}",
            x.name(ATTR_PK),
            x.name(ATTR_VERSION),
            x.value(n(version))
        );
        match self
            .delete_where(&desk_pk(tenant, kind), key, Some((condition, x)))
            .await?
        {
            Written::Done(_) => Ok(()),
            Written::ConditionFailed => Err(StoreError::Conflict(format!(
                "desk record {key} is not at version {version}"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn desk_records_round_trip() {
        let record = DeskRecord {
            key: "user:a@b.c".into(),
            version: 3,
            doc: r#"{"name":"Zoë"}"#.into(),
        };
        let item = desk_item("acme", DeskKind::Visitor, &record);
        assert_eq!(item.get(ATTR_PK), Some(&s("DESK#acme#visitor")));
        assert_eq!(decode_desk_record(&item).unwrap(), record);
    }
}
