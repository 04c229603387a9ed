//! `broker.*` handlers.

use bytes::Bytes;
use quiver_net::Failure;
use quiver_proto::decode_body;
use quiver_proto::requests::admin::StatsRequest;

use super::reply;
use crate::remoting::Broker;

pub(crate) async fn stats(broker: &Broker, body: &Bytes) -> Result<Bytes, Failure> {
    let _: StatsRequest = decode_body(body)?;
    reply(&broker.core.store().stats())
}

pub(crate) async fn read_stats(broker: &Broker, body: &Bytes) -> Result<Bytes, Failure> {
    let _: StatsRequest = decode_body(body)?;
    reply(&broker.core.store().read_stats())
}
