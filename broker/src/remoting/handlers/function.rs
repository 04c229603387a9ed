//! `fn.*` handlers.

use bytes::Bytes;
use quiver_net::Failure;
use quiver_proto::decode_body;
use quiver_proto::requests::function::{
    FnDeploy, FnList, FnListResponse, FnLogs, FnName, FnReplay, FnUpload,
};

use super::reply;
use crate::remoting::Broker;

pub(crate) async fn upload(broker: &Broker, body: &Bytes) -> Result<Bytes, Failure> {
    let request: FnUpload = decode_body(body)?;
    reply(&broker.functions.upload(request).await?)
}

pub(crate) async fn deploy(broker: &Broker, body: &Bytes) -> Result<Bytes, Failure> {
    let request: FnDeploy = decode_body(body)?;
    reply(&broker.functions.deploy(request).await?)
}

pub(crate) async fn list(broker: &Broker, body: &Bytes) -> Result<Bytes, Failure> {
    let _: FnList = decode_body(body)?;
    reply(&FnListResponse {
        functions: broker.functions.list().await?,
    })
}

pub(crate) async fn describe(broker: &Broker, body: &Bytes) -> Result<Bytes, Failure> {
    let request: FnName = decode_body(body)?;
    reply(&broker.functions.describe(&request.name).await?)
}

pub(crate) async fn logs(broker: &Broker, body: &Bytes) -> Result<Bytes, Failure> {
    let request: FnLogs = decode_body(body)?;
    reply(&broker.functions.logs(&request).await?)
}

pub(crate) async fn undeploy(broker: &Broker, body: &Bytes) -> Result<Bytes, Failure> {
    let request: FnName = decode_body(body)?;
    broker.functions.undeploy(&request.name).await?;
    Ok(Bytes::new())
}

pub(crate) async fn rollback(broker: &Broker, body: &Bytes) -> Result<Bytes, Failure> {
    let request: FnName = decode_body(body)?;
    reply(&broker.functions.rollback(&request.name).await?)
}

pub(crate) async fn replay(broker: &Broker, body: &Bytes) -> Result<Bytes, Failure> {
    let request: FnReplay = decode_body(body)?;
    reply(&broker.functions.replay(request).await?)
}
