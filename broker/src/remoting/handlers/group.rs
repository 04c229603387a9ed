//! `group.*` handlers.

use std::time::Duration;

use bytes::Bytes;
use quiver_net::Failure;
use quiver_proto::requests::function::FN_GROUP_PREFIX;
use quiver_proto::requests::group::{
    DlqResend, DlqResendResponse, GroupCommit, GroupDescribe, GroupHeartbeat, GroupLeave,
    GroupListResponse, GroupPull, GroupResetOffset, GroupResetOffsetResponse, GroupSendBack,
    GroupUpdate,
};
use quiver_proto::{ErrorCode, Name, decode_body};

use super::{readable_topic, reply};
use crate::remoting::Broker;

/// Longest member id.
const MEMBER_BYTES_MAX: usize = 128;
/// Longest free-text client description.
const CLIENT_BYTES_MAX: usize = 256;

fn group_name(text: &str) -> Result<Name, Failure> {
    Name::new(text)
        .map_err(|reason| Failure::new(ErrorCode::InvalidName, format!("group {reason}")))
}

/// The group of a member-side request: a group name outside the functions' `fn-` prefix.
fn member_group(text: &str) -> Result<Name, Failure> {
    let name = group_name(text)?;
    if let Some(function) = text.strip_prefix(FN_GROUP_PREFIX) {
        return Err(Failure::new(
            ErrorCode::InvalidArgument,
            format!(
                "group {text} belongs to function {}: the {FN_GROUP_PREFIX} prefix is reserved \
                 for functions the broker runs (deploy with quiver fn deploy, or pick another \
                 group name)",
                function
            ),
        ));
    }
    Ok(name)
}

fn member_id(member: &str) -> Result<(), Failure> {
    if member.is_empty() || member.len() > MEMBER_BYTES_MAX {
        return Err(Failure::new(
            ErrorCode::InvalidArgument,
            format!("member id must be 1 to {MEMBER_BYTES_MAX} bytes"),
        ));
    }
    Ok(())
}

pub(crate) async fn heartbeat(broker: &Broker, body: &Bytes) -> Result<Bytes, Failure> {
    let request: GroupHeartbeat = decode_body(body)?;
    member_group(&request.group)?;
    member_id(&request.member)?;
    if request.client.len() > CLIENT_BYTES_MAX {
        return Err(Failure::new(
            ErrorCode::InvalidArgument,
            format!("client description is over {CLIENT_BYTES_MAX} bytes"),
        ));
    }
    for sub in &request.subscriptions {
        readable_topic(&sub.topic)?;
    }
    reply(&broker.core.group_heartbeat(&request).await?)
}

pub(crate) async fn pull(broker: &Broker, body: &Bytes) -> Result<Bytes, Failure> {
    let request: GroupPull = decode_body(body)?;
    member_group(&request.group)?;
    readable_topic(&request.topic)?;
    let wait = Duration::from_millis(u64::from(request.wait_ms));
    let pulled = broker.core.group_pull(&request, wait).await?;
    Ok(super::msg::filtered_reply(pulled))
}

pub(crate) async fn commit(broker: &Broker, body: &Bytes) -> Result<Bytes, Failure> {
    let request: GroupCommit = decode_body(body)?;
    member_group(&request.group)?;
    broker.core.group_commit(&request).await?;
    Ok(Bytes::new())
}

pub(crate) async fn leave(broker: &Broker, body: &Bytes) -> Result<Bytes, Failure> {
    let request: GroupLeave = decode_body(body)?;
    member_group(&request.group)?;
    broker.core.group_leave(&request).await?;
    Ok(Bytes::new())
}

pub(crate) async fn list(broker: &Broker, _body: &Bytes) -> Result<Bytes, Failure> {
    reply(&GroupListResponse {
        groups: broker.core.group_list().await?,
    })
}

pub(crate) async fn describe(broker: &Broker, body: &Bytes) -> Result<Bytes, Failure> {
    let request: GroupDescribe = decode_body(body)?;
    group_name(&request.group)?;
    reply(&broker.core.group_describe(&request.group).await?)
}

pub(crate) async fn update(broker: &Broker, body: &Bytes) -> Result<Bytes, Failure> {
    let request: GroupUpdate = decode_body(body)?;
    member_group(&request.group)?;
    broker
        .core
        .group_update(&request.group, &request.settings)
        .await?;
    Ok(Bytes::new())
}

pub(crate) async fn reset_offset(broker: &Broker, body: &Bytes) -> Result<Bytes, Failure> {
    let request: GroupResetOffset = decode_body(body)?;
    group_name(&request.group)?;
    let name = readable_topic(&request.topic)?;
    let queues = broker
        .core
        .group_reset_offset(&request.group, name.as_str(), request.to)
        .await?;
    reply(&GroupResetOffsetResponse { queues })
}

pub(crate) async fn send_back(broker: &Broker, body: &Bytes) -> Result<Bytes, Failure> {
    let request: GroupSendBack = decode_body(body)?;
    member_group(&request.group)?;
    member_id(&request.member)?;
    readable_topic(&request.topic)?;
    reply(&broker.core.group_send_back(&request).await?)
}

pub(crate) async fn dlq_resend(broker: &Broker, body: &Bytes) -> Result<Bytes, Failure> {
    let request: DlqResend = decode_body(body)?;
    group_name(&request.group)?;
    let resent = broker
        .core
        .group_dlq_resend(&request.group, request.msg_id)
        .await?;
    reply(&DlqResendResponse { resent })
}
