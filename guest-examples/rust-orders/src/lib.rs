//! Orders: validate JSON orders, enrich them and route them by region (a Shardline guest
//! on the `shardline-guest` SDK). The rules live in `orders.rs`, free of bindings, so the
//! host's native benchmark and the hand-written guest run exactly them.

pub mod orders;

use orders::{Order, DEFAULT_PROCESSED_BY, DEFAULT_TOPIC_PREFIX, REGION_PROPERTY};
use shardline_guest::{Context, Guest, Output, Record, Reject};

/// The component. `pub`: the SDK only calls its functions and never builds a value, which
/// the dead-code lint would flag in native builds of a private type.
#[derive(Debug)]
pub struct Orders;

impl Guest for Orders {
    fn on_record(record: &Record<'_>, ctx: &Context) -> Result<Vec<Output>, Reject> {
        let settings = ctx.settings();
        let mut order = Order::parse(record.data).map_err(Reject::new)?;
        let processed_by = settings.get_or("processed_by", DEFAULT_PROCESSED_BY);
        if !order.enrich(processed_by).map_err(Reject::transform)? {
            return Ok(vec![]); // amount 0: nothing to ship, filtered out
        }
        let out = Output::bytes(order.to_json())
            .key(order.id())
            .property(REGION_PROPERTY, order.region());
        let topics = order.topics(settings.get_or("topic_prefix", DEFAULT_TOPIC_PREFIX));
        Ok(vec![topics.into_iter().fold(out, Output::to_topic)])
    }
}

shardline_guest::export!(Orders);
