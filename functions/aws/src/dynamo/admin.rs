//! Table administration: [`DynamoStore::ensure_table`] creates the table the key design needs
//! (where deployments do not: local runs, tests), waits for it, and turns TTL on.

use std::time::Duration;

use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    StreamSpecification, StreamViewType, TableStatus, TimeToLiveSpecification, TimeToLiveStatus,
};
use roomcast_core::store::StoreError;

use super::DynamoStore;
use super::errors::{build_error, error_code, sdk_error};
use super::schema::{ATTR_PK, ATTR_SK, ATTR_TTL};

/// How long `ensure_table` waits for a new table to become ACTIVE.
const TABLE_ACTIVE_TIMEOUT: Duration = Duration::from_secs(120);

impl DynamoStore {
    /// Creates the table (on-demand, `pk`/`sk` strings) unless it exists, waits until it is
    /// ACTIVE, and enables TTL on [`ATTR_TTL`]. Idempotent, safe to run from several processes.
    /// No stream: only integration events read one ([`DynamoStore::enable_stream`]).
    pub async fn ensure_table(&self) -> Result<(), StoreError> {
        let key = |name: &str, key_type| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(key_type)
                .build()
                .map_err(build_error)
        };
        let string_attr = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .map_err(build_error)
        };
        let created = self
            .client
            .create_table()
            .table_name(&self.table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(string_attr(ATTR_PK)?)
            .attribute_definitions(string_attr(ATTR_SK)?)
            .key_schema(key(ATTR_PK, KeyType::Hash)?)
            .key_schema(key(ATTR_SK, KeyType::Range)?)
            .send()
            .await;
        match created {
            Ok(_) => tracing::info!(table = %self.table, "created table"),
            Err(e) if error_code(&e) == Some("ResourceInUseException") => {}
            Err(e) => return Err(sdk_error("CreateTable", e)),
        }
        self.wait_until_active().await?;
        self.enable_ttl().await
    }

    /// Turns on the table's stream of new and old images, as the deployed table has it for
    /// integration events (the events function reads it). Idempotent. Local runs leave it off
    /// unless they run that function: an emulator copies the whole table, stream included, on
    /// every transaction.
    pub async fn enable_stream(&self) -> Result<(), StoreError> {
        let described = self
            .client
            .describe_table()
            .table_name(&self.table)
            .send()
            .await
            .map_err(|e| sdk_error("DescribeTable", e))?;
        let enabled = described
            .table()
            .and_then(|t| t.stream_specification())
            .is_some_and(|s| s.stream_enabled());
        if enabled {
            return Ok(());
        }
        let stream = StreamSpecification::builder()
            .stream_enabled(true)
            .stream_view_type(StreamViewType::NewAndOldImages)
            .build()
            .map_err(build_error)?;
        self.client
            .update_table()
            .table_name(&self.table)
            .stream_specification(stream)
            .send()
            .await
            .map_err(|e| sdk_error("UpdateTable", e))?;
        self.wait_until_active().await
    }

    /// Polls DescribeTable until the table is ACTIVE, at most [`TABLE_ACTIVE_TIMEOUT`].
    async fn wait_until_active(&self) -> Result<(), StoreError> {
        let deadline = tokio::time::Instant::now() + TABLE_ACTIVE_TIMEOUT;
        loop {
            let described = self
                .client
                .describe_table()
                .table_name(&self.table)
                .send()
                .await
                .map_err(|e| sdk_error("DescribeTable", e))?;
            let status = described.table().and_then(|t| t.table_status());
            if status == Some(&TableStatus::Active) {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(StoreError::Unavailable(format!(
                    "table {} is not ACTIVE after {TABLE_ACTIVE_TIMEOUT:?} ({status:?})",
                    self.table
                )));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Turns TTL on for [`ATTR_TTL`] unless it is on already; a table whose TTL is on for
    /// another attribute is an error (DynamoDB allows one TTL attribute per table).
    async fn enable_ttl(&self) -> Result<(), StoreError> {
        let described = self
            .client
            .describe_time_to_live()
            .table_name(&self.table)
            .send()
            .await
            .map_err(|e| sdk_error("DescribeTimeToLive", e))?;
        if let Some(ttl) = described.time_to_live_description() {
            let on = matches!(
                ttl.time_to_live_status(),
                Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling)
            );
            match ttl.attribute_name() {
                Some(ATTR_TTL) if on => return Ok(()),
                Some(other) if on => {
                    return Err(StoreError::Other(format!(
                        "table {} has TTL on attribute {other:?}, roomcast needs {ATTR_TTL:?}",
                        self.table
                    )));
                }
                _ => {}
            }
        }
        let spec = TimeToLiveSpecification::builder()
            .enabled(true)
            .attribute_name(ATTR_TTL)
            .build()
            .map_err(build_error)?;
        match self
            .client
            .update_time_to_live()
            .table_name(&self.table)
            .time_to_live_specification(spec)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            // Another process enabled it between our describe and update.
            Err(e) if format!("{}", DisplayErrorContext(&e)).contains("already enabled") => Ok(()),
            Err(e) => Err(sdk_error("UpdateTimeToLive", e)),
        }
    }
}
