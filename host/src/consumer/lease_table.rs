//! The DynamoDB lease table: create it, list leases, and change them only with conditional
//! writes on `leaseCounter` (and owner), so two workers can never both believe they hold a
//! shard. During a graceful handoff (KCL 3.x `checkpointOwner`, see
//! [`super::lease_handoff`]) the worker named in `checkpointOwner` is the one that holds it.

use std::time::Duration;

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, ReturnValue,
    ScalarAttributeType, TableStatus,
};
use aws_sdk_dynamodb::Client;

use super::checkpoint::Checkpoint;
use super::lease::{attr, outputs_item, Lease, MalformedLease};
use crate::sinks::sequence::Outputs;

/// What can go wrong with the lease table.
#[derive(Debug, thiserror::Error)]
pub enum LeaseTableError {
    /// The condition failed: someone else changed the lease (we lost it, or lost a race).
    #[error("lease {0} was changed by another worker")]
    Conflict(String),
    #[error("lease table {table}: {operation} failed: {message}")]
    Service {
        table: String,
        operation: &'static str,
        message: String,
    },
    #[error(transparent)]
    Malformed(#[from] MalformedLease),
}

/// Access to one lease table.
#[derive(Debug, Clone)]
pub struct LeaseTable {
    client: Client,
    table: String,
}

fn service_err<E, R>(table: &str, operation: &'static str, e: SdkError<E, R>) -> LeaseTableError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    LeaseTableError::Service {
        table: table.to_string(),
        operation,
        message: crate::aws::describe(&e),
    }
}

fn is_conditional<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> bool {
    e.as_service_error()
        .and_then(|se| se.code())
        .is_some_and(|c| c == "ConditionalCheckFailedException")
}

impl LeaseTable {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    pub fn name(&self) -> &str {
        &self.table
    }

    /// Creates the table (on-demand billing, key `leaseKey`) if it does not exist, and
    /// waits until it is ACTIVE.
    pub async fn ensure(&self) -> Result<(), LeaseTableError> {
        match self
            .client
            .describe_table()
            .table_name(&self.table)
            .send()
            .await
        {
            Ok(d) => {
                if d.table().and_then(|t| t.table_status()) == Some(&TableStatus::Active) {
                    return Ok(());
                }
            }
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_resource_not_found_exception()) =>
            {
                tracing::info!(table = %self.table, "creating the lease table");
                let created = self
                    .client
                    .create_table()
                    .table_name(&self.table)
                    .billing_mode(BillingMode::PayPerRequest)
                    .attribute_definitions(
                        AttributeDefinition::builder()
                            .attribute_name(attr::LEASE_KEY)
                            .attribute_type(ScalarAttributeType::S)
                            .build()
                            .map_err(|e| self.build_err(e))?,
                    )
                    .key_schema(
                        KeySchemaElement::builder()
                            .attribute_name(attr::LEASE_KEY)
                            .key_type(KeyType::Hash)
                            .build()
                            .map_err(|e| self.build_err(e))?,
                    )
                    .send()
                    .await;
                if let Err(e) = created {
                    // Another worker created it first: fine.
                    let in_use = e
                        .as_service_error()
                        .is_some_and(|se| se.is_resource_in_use_exception());
                    if !in_use {
                        return Err(service_err(&self.table, "CreateTable", e));
                    }
                }
            }
            Err(e) => return Err(service_err(&self.table, "DescribeTable", e)),
        }
        for _ in 0..600 {
            let d = self
                .client
                .describe_table()
                .table_name(&self.table)
                .send()
                .await
                .map_err(|e| service_err(&self.table, "DescribeTable", e))?;
            if d.table().and_then(|t| t.table_status()) == Some(&TableStatus::Active) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(LeaseTableError::Service {
            table: self.table.clone(),
            operation: "DescribeTable",
            message: "table did not become ACTIVE within 60s".into(),
        })
    }

    fn build_err(&self, e: impl std::fmt::Display) -> LeaseTableError {
        LeaseTableError::Service {
            table: self.table.clone(),
            operation: "CreateTable",
            message: e.to_string(),
        }
    }

    /// Every lease (consistent scan, all pages); other items of the table are skipped.
    pub async fn list(&self) -> Result<Vec<Lease>, LeaseTableError> {
        self.scan(None).await
    }

    /// The leases (consistent scan, all pages) whose `leaseOwner` is `owner`, or all of
    /// them. Items the KCL 3.x keeps beside the leases are left as they are.
    async fn scan(&self, owner: Option<&str>) -> Result<Vec<Lease>, LeaseTableError> {
        let mut out = Vec::new();
        let mut start = None;
        loop {
            let mut scan = self
                .client
                .scan()
                .table_name(&self.table)
                .consistent_read(true)
                .set_exclusive_start_key(start);
            if let Some(owner) = owner {
                scan = scan
                    .filter_expression("#o = :owner")
                    .expression_attribute_names("#o", attr::LEASE_OWNER)
                    .expression_attribute_values(":owner", AttributeValue::S(owner.to_string()));
            }
            let page = scan
                .send()
                .await
                .map_err(|e| service_err(&self.table, "Scan", e))?;
            for item in page.items().iter().filter(|i| Lease::is_lease_item(i)) {
                out.push(Lease::from_item(item)?);
            }
            match page.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => break,
            }
        }
        Ok(out)
    }

    /// Creates a lease unless one exists. Returns whether it was created.
    pub async fn create_if_absent(&self, lease: &Lease) -> Result<bool, LeaseTableError> {
        let r = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(lease.to_item()))
            .condition_expression("attribute_not_exists(#k)")
            .expression_attribute_names("#k", attr::LEASE_KEY)
            .send()
            .await;
        match r {
            Ok(_) => Ok(true),
            Err(e) if is_conditional(&e) => Ok(false),
            Err(e) => Err(service_err(&self.table, "PutItem", e)),
        }
    }

    /// Takes a lease seen with `lease.counter`: owner := `worker`, counter + 1, a pending
    /// handoff (`checkpointOwner`) cancelled, as the KCL 3.x does. Fails with `Conflict` if
    /// anyone changed it since.
    pub async fn take(&self, lease: &Lease, worker: &str) -> Result<i64, LeaseTableError> {
        let next = lease.counter + 1;
        let switched = lease.owner.as_deref() != Some(worker);
        let r = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(attr::LEASE_KEY, AttributeValue::S(lease.key.clone()))
            .update_expression(
                "SET #o = :o, #c = :next, #sw = if_not_exists(#sw, :zero) + :inc REMOVE #cpo",
            )
            .condition_expression("#c = :expected")
            .expression_attribute_names("#cpo", attr::CHECKPOINT_OWNER)
            .expression_attribute_names("#o", attr::LEASE_OWNER)
            .expression_attribute_names("#c", attr::LEASE_COUNTER)
            .expression_attribute_names("#sw", attr::OWNER_SWITCHES)
            .expression_attribute_values(":o", AttributeValue::S(worker.to_string()))
            .expression_attribute_values(":next", AttributeValue::N(next.to_string()))
            .expression_attribute_values(":expected", AttributeValue::N(lease.counter.to_string()))
            .expression_attribute_values(":inc", AttributeValue::N(i32::from(switched).to_string()))
            .expression_attribute_values(":zero", AttributeValue::N("0".into()))
            .send()
            .await;
        self.conditional(r, &lease.key, "UpdateItem (take)")?;
        Ok(next)
    }

    /// Renews a held lease: counter + 1, only while we hold it at `counter` (as its owner,
    /// or as its `checkpointOwner` while a handoff is pending). The answer says whether a
    /// handoff to another worker was asked for.
    pub async fn renew(
        &self,
        key: &str,
        worker: &str,
        counter: i64,
    ) -> Result<Renewed, LeaseTableError> {
        let next = counter + 1;
        let r = self
            .owned_update(key, worker, counter)
            .update_expression("SET #c = :next")
            .expression_attribute_values(":next", AttributeValue::N(next.to_string()))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        let handoff_to = match &r {
            Ok(out) => out.attributes().and_then(|item| {
                let named = |name: &str| match item.get(name) {
                    Some(AttributeValue::S(s)) if !s.is_empty() => Some(s.as_str()),
                    _ => None,
                };
                // (A lease whose owner is also its checkpoint owner is not being moved.)
                (named(attr::CHECKPOINT_OWNER) == Some(worker))
                    .then(|| named(attr::LEASE_OWNER).filter(|o| *o != worker))
                    .flatten()
                    .map(str::to_string)
            }),
            Err(_) => None,
        };
        self.conditional(r, key, "UpdateItem (renew)")?;
        Ok(Renewed {
            counter: next,
            handoff_to,
        })
    }

    /// Writes a checkpoint of a held lease (counter + 1, owner switches reset).
    ///
    /// `children` (lease keys) are recorded as `childShardIds` when given, as the KCL does at
    /// shard end; `outputs`, the output sequence at this checkpoint, when a sink
    /// deduplicates.
    pub async fn checkpoint(
        &self,
        key: &str,
        worker: &str,
        counter: i64,
        checkpoint: &Checkpoint,
        children: &[String],
        outputs: Option<&Outputs>,
    ) -> Result<i64, LeaseTableError> {
        let next = counter + 1;
        let started = std::time::Instant::now();
        let mut update = self.owned_update(key, worker, counter);
        let mut set =
            String::from("SET #c = :next, #cp = :cp, #sub = :sub, #sw = :zero, #ct = :ct");
        if !children.is_empty() {
            set.push_str(", #ch = :ch");
            update = update
                .expression_attribute_names("#ch", attr::CHILD_SHARD_IDS)
                .expression_attribute_values(":ch", AttributeValue::Ss(children.to_vec()));
        }
        for (i, (name, value)) in outputs
            .map(|o| outputs_item(o, checkpoint))
            .unwrap_or_default()
            .into_iter()
            .enumerate()
        {
            set.push_str(&format!(", #o{i} = :o{i}"));
            update = update
                .expression_attribute_names(format!("#o{i}"), name)
                .expression_attribute_values(format!(":o{i}"), value);
        }
        let r = update
            .update_expression(set)
            .expression_attribute_names("#cp", attr::CHECKPOINT)
            .expression_attribute_names("#sub", attr::CHECKPOINT_SUB)
            .expression_attribute_names("#sw", attr::OWNER_SWITCHES)
            .expression_attribute_names("#ct", attr::CHECKPOINT_TIME)
            .expression_attribute_values(":ct", AttributeValue::N(now_millis().to_string()))
            .expression_attribute_values(":next", AttributeValue::N(next.to_string()))
            .expression_attribute_values(":cp", AttributeValue::S(checkpoint.as_kcl().to_string()))
            .expression_attribute_values(
                ":sub",
                AttributeValue::N(checkpoint.sub_sequence().to_string()),
            )
            .expression_attribute_values(":zero", AttributeValue::N("0".into()))
            .send()
            .await;
        let r = self.conditional(r, key, "UpdateItem (checkpoint)");
        crate::consumer::metrics::checkpointed(key, started, r.is_ok());
        r?;
        Ok(next)
    }

    /// Deletes a finished, unowned lease seen with `counter` (parent cleanup). `false` when
    /// someone changed it since.
    pub async fn delete_finished(&self, lease: &Lease) -> Result<bool, LeaseTableError> {
        let r = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key(attr::LEASE_KEY, AttributeValue::S(lease.key.clone()))
            .condition_expression("#c = :expected AND #cp = :end AND attribute_not_exists(#o)")
            .expression_attribute_names("#c", attr::LEASE_COUNTER)
            .expression_attribute_names("#cp", attr::CHECKPOINT)
            .expression_attribute_names("#o", attr::LEASE_OWNER)
            .expression_attribute_values(":expected", AttributeValue::N(lease.counter.to_string()))
            .expression_attribute_values(":end", AttributeValue::S("SHARD_END".into()))
            .send()
            .await;
        match r {
            Ok(_) => Ok(true),
            Err(e) if is_conditional(&e) => Ok(false),
            Err(e) => Err(service_err(&self.table, "DeleteItem", e)),
        }
    }

    /// Gives a held lease up (owner and any pending handoff removed, counter + 1) so
    /// another worker takes it at once instead of waiting for it to expire.
    pub async fn release(
        &self,
        key: &str,
        worker: &str,
        counter: i64,
    ) -> Result<(), LeaseTableError> {
        let r = self
            .owned_update(key, worker, counter)
            .update_expression("SET #c = :next REMOVE #o, #cpo")
            .expression_attribute_values(":next", AttributeValue::N((counter + 1).to_string()))
            .send()
            .await;
        self.conditional(r, key, "UpdateItem (release)")
    }

    /// Asks the owner of a lease seen with `lease.counter` to hand it over to `to` (the KCL
    /// 3.x `initiateGracefulLeaseHandoff`): `leaseOwner` := `to`, `checkpointOwner` := the
    /// current owner, counter unchanged (the owner goes on renewing it until its final
    /// checkpoint). Only while counter and owner are unchanged and no handoff is pending.
    pub async fn mark_handoff(&self, lease: &Lease, to: &str) -> Result<(), LeaseTableError> {
        let Some(owner) = lease.owner.as_deref() else {
            return Err(LeaseTableError::Conflict(lease.key.clone()));
        };
        let r = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(attr::LEASE_KEY, AttributeValue::S(lease.key.clone()))
            .update_expression("SET #o = :to, #cpo = :owner")
            .condition_expression("#c = :expected AND #o = :owner AND attribute_not_exists(#cpo)")
            .expression_attribute_names("#o", attr::LEASE_OWNER)
            .expression_attribute_names("#c", attr::LEASE_COUNTER)
            .expression_attribute_names("#cpo", attr::CHECKPOINT_OWNER)
            .expression_attribute_values(":to", AttributeValue::S(to.to_string()))
            .expression_attribute_values(":owner", AttributeValue::S(owner.to_string()))
            .expression_attribute_values(":expected", AttributeValue::N(lease.counter.to_string()))
            .send()
            .await;
        self.conditional(r, &lease.key, "UpdateItem (mark handoff)")
    }

    /// Hands a held lease (drained, checkpointed) over to `to`: `leaseOwner` := `to`,
    /// `checkpointOwner` removed, counter + 1, one more owner switch. Completes a pending
    /// handoff (`to` is then its `leaseOwner`, the KCL 3.x `assignLease` from the
    /// checkpoint owner), or assigns the lease directly to a live worker at shutdown.
    pub async fn hand_off(
        &self,
        key: &str,
        worker: &str,
        counter: i64,
        to: &str,
    ) -> Result<(), LeaseTableError> {
        let r = self
            .owned_update(key, worker, counter)
            .update_expression(
                "SET #o = :to, #c = :next, #sw = if_not_exists(#sw, :zero) + :one REMOVE #cpo",
            )
            .expression_attribute_names("#sw", attr::OWNER_SWITCHES)
            .expression_attribute_values(":to", AttributeValue::S(to.to_string()))
            .expression_attribute_values(":next", AttributeValue::N((counter + 1).to_string()))
            .expression_attribute_values(":zero", AttributeValue::N("0".into()))
            .expression_attribute_values(":one", AttributeValue::N("1".into()))
            .send()
            .await;
        self.conditional(r, key, "UpdateItem (hand off)")
    }

    /// One lease, read consistently; `None` when there is no such lease.
    pub async fn get(&self, key: &str) -> Result<Option<Lease>, LeaseTableError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(attr::LEASE_KEY, AttributeValue::S(key.to_string()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| service_err(&self.table, "GetItem", e))?;
        match out.item() {
            Some(item) if Lease::is_lease_item(item) => Ok(Some(Lease::from_item(item)?)),
            _ => Ok(None),
        }
    }

    /// The leases whose `leaseOwner` is `worker` (a scan filtered on the owner: what was
    /// handed to this worker and what it holds), for the quick assignment check.
    pub async fn owned_by(&self, worker: &str) -> Result<Vec<Lease>, LeaseTableError> {
        self.scan(Some(worker)).await
    }

    /// An update of a lease this worker holds at `counter`: as its owner with no handoff
    /// pending, or as its `checkpointOwner` while one is.
    fn owned_update(
        &self,
        key: &str,
        worker: &str,
        counter: i64,
    ) -> aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder {
        self.client
            .update_item()
            .table_name(&self.table)
            .key(attr::LEASE_KEY, AttributeValue::S(key.to_string()))
            .condition_expression(
                "#c = :expected AND ((#o = :me AND attribute_not_exists(#cpo)) OR #cpo = :me)",
            )
            .expression_attribute_names("#c", attr::LEASE_COUNTER)
            .expression_attribute_names("#o", attr::LEASE_OWNER)
            .expression_attribute_names("#cpo", attr::CHECKPOINT_OWNER)
            .expression_attribute_values(":expected", AttributeValue::N(counter.to_string()))
            .expression_attribute_values(":me", AttributeValue::S(worker.to_string()))
    }

    fn conditional<T, E, R>(
        &self,
        r: Result<T, SdkError<E, R>>,
        key: &str,
        operation: &'static str,
    ) -> Result<(), LeaseTableError>
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        match r {
            Ok(_) => Ok(()),
            Err(e) if is_conditional(&e) => Err(LeaseTableError::Conflict(key.to_string())),
            Err(e) => Err(service_err(&self.table, operation, e)),
        }
    }
}

/// A renewal written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Renewed {
    pub counter: i64,
    /// The worker the lease is to be handed over to, when a graceful handoff is pending
    /// (`checkpointOwner` is this worker, `leaseOwner` the next one).
    pub handoff_to: Option<String>,
}

fn now_millis() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

/// When each lease's checkpoint was last written by Shardline (Unix milliseconds), by
/// lease key; leases a KCL application wrote have none.
pub async fn checkpoint_times(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
) -> Result<std::collections::HashMap<String, i64>, String> {
    let mut out = std::collections::HashMap::new();
    let mut start = None;
    loop {
        let page = client
            .scan()
            .table_name(table)
            .projection_expression("#k, #ct")
            .expression_attribute_names("#k", attr::LEASE_KEY)
            .expression_attribute_names("#ct", attr::CHECKPOINT_TIME)
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(|e| aws_smithy_types::error::display::DisplayErrorContext(e).to_string())?;
        for item in page.items() {
            if let (Some(AttributeValue::S(k)), Some(AttributeValue::N(t))) =
                (item.get(attr::LEASE_KEY), item.get(attr::CHECKPOINT_TIME))
            {
                if let Ok(t) = t.parse() {
                    out.insert(k.clone(), t);
                }
            }
        }
        start = page.last_evaluated_key;
        if start.is_none() {
            return Ok(out);
        }
    }
}
