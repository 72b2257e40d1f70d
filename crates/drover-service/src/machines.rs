use std::collections::BTreeMap;

use drover_model::{
    JoinTokenId, Machine, MachineId, MachineSearch, MachineSearchPage, MachineSort, Page, Role,
};
use drover_store::machines::{self, MachineRow};

use crate::{Drover, RequestContext, Result, ServiceError};

pub const DEFAULT_PAGE_SIZE: u32 = 100;
pub const MAX_PAGE_SIZE: u32 = 1000;

impl Drover {
    /// One page of the tenant's machines, ordered by id. `cursor` is a previous page's
    /// `next_cursor`.
    pub async fn list_machines(
        &self,
        ctx: &RequestContext,
        limit: Option<u32>,
        cursor: Option<&str>,
    ) -> Result<Page<Machine>> {
        ctx.require(Role::Reader, "listing machines")?;
        let limit = limit.unwrap_or(DEFAULT_PAGE_SIZE);
        if !(1..=MAX_PAGE_SIZE).contains(&limit) {
            return Err(ServiceError::invalid(
                "limit",
                format!("{limit} is out of range: use 1 to {MAX_PAGE_SIZE}"),
            ));
        }
        let after = match cursor.filter(|c| !c.is_empty()) {
            Some(c) => Some(c.parse::<MachineId>().map_err(|_| {
                ServiceError::invalid("cursor", "not a cursor returned by this API")
            })?),
            None => None,
        };
        let mut rows =
            machines::list(self.store.pool(), ctx.tenant(), after.as_ref(), limit + 1).await?;
        let next_cursor = if rows.len() > limit as usize {
            rows.truncate(limit as usize);
            rows.last().map(|r| r.id.clone())
        } else {
            None
        };
        Ok(Page {
            items: rows.into_iter().map(to_model).collect(),
            next_cursor,
        })
    }

    /// The machines matching `query`, one page of them in its order, and how many match.
    pub async fn search_machines(
        &self,
        ctx: &RequestContext,
        query: &MachineSearch,
    ) -> Result<MachineSearchPage> {
        ctx.require(Role::Reader, "listing machines")?;
        let limit = if query.limit == 0 {
            DEFAULT_PAGE_SIZE
        } else {
            query.limit
        };
        if limit > MAX_PAGE_SIZE {
            return Err(ServiceError::invalid(
                "limit",
                format!("{limit} is out of range: use 1 to {MAX_PAGE_SIZE}"),
            ));
        }
        let mut label_values = BTreeMap::new();
        let mut label_keys = Vec::new();
        for label in query
            .labels
            .iter()
            .map(|l| l.trim())
            .filter(|l| !l.is_empty())
        {
            match label.split_once('=') {
                Some((key, value)) if !key.trim().is_empty() => {
                    label_values.insert(key.trim().to_owned(), value.trim().to_owned());
                }
                Some(_) => {
                    return Err(ServiceError::invalid(
                        "labels",
                        format!("{label:?} has no key: use `key` or `key=value`"),
                    ));
                }
                None => label_keys.push(label.to_owned()),
            }
        }
        let order_by = match (query.sort, query.descending) {
            (MachineSort::Id, false) => "id",
            (MachineSort::Id, true) => "id DESC",
            (MachineSort::Hostname, false) => "facts->>'hostname' NULLS LAST",
            (MachineSort::Hostname, true) => "facts->>'hostname' DESC NULLS LAST",
            (MachineSort::TalosVersion, false) => "talos_version",
            (MachineSort::TalosVersion, true) => "talos_version DESC",
            (MachineSort::Stage, false) => "stage NULLS LAST",
            (MachineSort::Stage, true) => "stage DESC NULLS LAST",
            (MachineSort::LastSeen, false) => "last_seen_at NULLS LAST",
            (MachineSort::LastSeen, true) => "last_seen_at DESC NULLS LAST",
        };
        let (rows, total) = machines::search(
            self.store.pool(),
            ctx.tenant(),
            &machines::Search {
                text: non_empty(&query.text),
                connected: query.connected,
                available: query.available,
                cluster: non_empty(&query.cluster),
                label_values: &label_values,
                label_keys: &label_keys,
                order_by,
                offset: query.offset,
                limit,
            },
        )
        .await?;
        Ok(MachineSearchPage {
            items: rows.into_iter().map(to_model).collect(),
            total: u64::try_from(total).unwrap_or_default(),
            offset: query.offset,
            limit,
        })
    }

    pub async fn get_machine(&self, ctx: &RequestContext, id: &str) -> Result<Machine> {
        ctx.require(Role::Reader, "reading a machine")?;
        let id: MachineId = id
            .parse()
            .map_err(|e: drover_model::InvalidId| ServiceError::invalid("id", e.to_string()))?;
        machines::get(self.store.pool(), ctx.tenant(), &id)
            .await?
            .map(to_model)
            .ok_or_else(|| ServiceError::not_found("machine", id))
    }
}

impl Drover {
    /// Removes a machine from the inventory: its tunnel is closed, its logs are dropped. A node
    /// that is still running and holds a valid join token can join again as a new machine.
    pub async fn delete_machine(&self, ctx: &RequestContext, id: &str) -> Result<()> {
        self.audited(
            ctx,
            "machine.delete",
            id,
            self.delete_machine_unaudited(ctx, id),
        )
        .await
    }

    async fn delete_machine_unaudited(&self, ctx: &RequestContext, id: &str) -> Result<()> {
        ctx.require(Role::Operator, "deleting a machine")?;
        let id: MachineId = id
            .parse()
            .map_err(|e: drover_model::InvalidId| ServiceError::invalid("id", e.to_string()))?;
        let address = machines::delete(self.store.pool(), ctx.tenant(), &id)
            .await?
            .ok_or_else(|| ServiceError::not_found("machine", &id))?;
        if let (Some(sink), Ok(address)) = (&self.peers, address.parse()) {
            sink.peer_removed(address);
        }
        tracing::info!(machine = %id, "machine deleted");
        Ok(())
    }
}

pub(crate) fn to_model(row: MachineRow) -> Machine {
    let labels = crate::machine_labels(&row);
    Machine {
        id: MachineId::try_from(row.id).expect("stored machine ids are valid"),
        address: row.address,
        talos_version: row.talos_version,
        connected: row.connected,
        last_seen_at: row.last_seen_at,
        wireguard_public_key: row.wireguard_public_key,
        wireguard_over_grpc: row.wireguard_over_grpc,
        join_token_id: row.join_token_id.map(JoinTokenId::from_uuid),
        first_provisioned_at: row.first_provisioned_at,
        last_provisioned_at: row.last_provisioned_at,
        stage: row.stage,
        ready: row.ready,
        unmet_conditions: serde_json::from_value(row.unmet_conditions).unwrap_or_default(),
        last_error: row.last_error,
        labels,
        facts: row.facts.and_then(|f| serde_json::from_value(f).ok()),
        patches: row.patches.0,
        cluster: row.cluster,
    }
}

/// The trimmed text, when there is any.
fn non_empty(text: &Option<String>) -> Option<&str> {
    text.as_deref().map(str::trim).filter(|t| !t.is_empty())
}
