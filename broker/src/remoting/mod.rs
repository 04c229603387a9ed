//! Remoting: decode → core → encode. One request code → one handler; the shared envelope
//! (`quiver_net::envelope`) answers unknown codes, checks the access policy and turns a
//! [`Failure`] into an error frame. No storage layout and no domain logic live here: the
//! handlers call [`Core`].

mod handlers;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use quiver_net::{Failure, Peer, Service};
use quiver_proto::{ErrorCode, Frame, RequestCode};

use crate::core::Core;
use crate::functions::Functions;
use crate::store::{Refusal, StoreError};

/// Request-path settings.
#[derive(Clone, Debug)]
pub struct RemotingConfig {
    /// Cluster name.
    pub cluster: String,
    /// This broker's name in routes.
    pub broker_name: String,
    /// The address clients use to reach this broker.
    pub advertise: String,
    /// Who may send what.
    pub access: quiver_net::server::AccessPolicy,
}

/// The broker's request handlers over its core.
pub struct Broker {
    pub(crate) core: Arc<Core>,
    pub(crate) functions: Arc<Functions>,
    pub(crate) config: RemotingConfig,
}

impl Broker {
    /// Handlers over `core` and its `functions`.
    pub fn new(core: Arc<Core>, functions: Arc<Functions>, config: RemotingConfig) -> Self {
        Broker {
            core,
            functions,
            config,
        }
    }

    /// The core behind the handlers.
    pub fn core(&self) -> &Arc<Core> {
        &self.core
    }

    /// The request-path settings.
    pub fn config(&self) -> &RemotingConfig {
        &self.config
    }

    async fn dispatch(&self, code: RequestCode, body: Bytes) -> Result<Bytes, Failure> {
        let body = &body;
        match code {
            RequestCode::TopicCreate => handlers::topic::create(self, body).await,
            RequestCode::TopicUpdate => handlers::topic::update(self, body).await,
            RequestCode::TopicDelete => handlers::topic::delete(self, body).await,
            RequestCode::TopicList => handlers::topic::list(self, body).await,
            RequestCode::TopicDescribe => handlers::topic::describe(self, body).await,
            RequestCode::MsgSend => handlers::msg::send(self, body).await,
            RequestCode::MsgPull => handlers::msg::pull(self, body).await,
            RequestCode::MsgQueryId => handlers::msg::query_id(self, body).await,
            RequestCode::MsgQueryKey => handlers::msg::query_key(self, body).await,
            RequestCode::QueueOffsets => handlers::msg::queue_offsets(self, body).await,
            RequestCode::MsgPullFiltered => handlers::msg::pull_filtered(self, body).await,
            RequestCode::QueueOffsetAtTime => handlers::msg::offset_at_time(self, body).await,
            RequestCode::RouteGet => handlers::route::get(self, body).await,
            RequestCode::ClusterList => handlers::route::cluster_list(self, body).await,
            RequestCode::BrokerRegister
            | RequestCode::BrokerHeartbeat
            | RequestCode::BrokerUnregister => Err(Failure::new(
                ErrorCode::InvalidArgument,
                format!(
                    "{code} goes to a name server: this is broker {}",
                    self.config.broker_name
                ),
            )),
            RequestCode::GroupHeartbeat => handlers::group::heartbeat(self, body).await,
            RequestCode::GroupPull => handlers::group::pull(self, body).await,
            RequestCode::GroupCommit => handlers::group::commit(self, body).await,
            RequestCode::GroupLeave => handlers::group::leave(self, body).await,
            RequestCode::GroupList => handlers::group::list(self, body).await,
            RequestCode::GroupDescribe => handlers::group::describe(self, body).await,
            RequestCode::GroupUpdate => handlers::group::update(self, body).await,
            RequestCode::GroupResetOffset => handlers::group::reset_offset(self, body).await,
            RequestCode::GroupSendBack => handlers::group::send_back(self, body).await,
            RequestCode::GroupDlqResend => handlers::group::dlq_resend(self, body).await,
            RequestCode::FnUpload => handlers::function::upload(self, body).await,
            RequestCode::FnDeploy => handlers::function::deploy(self, body).await,
            RequestCode::FnList => handlers::function::list(self, body).await,
            RequestCode::FnDescribe => handlers::function::describe(self, body).await,
            RequestCode::FnLogs => handlers::function::logs(self, body).await,
            RequestCode::FnUndeploy => handlers::function::undeploy(self, body).await,
            RequestCode::FnRollback => handlers::function::rollback(self, body).await,
            RequestCode::FnReplay => handlers::function::replay(self, body).await,
            RequestCode::BrokerStats => handlers::admin::stats(self, body).await,
            RequestCode::BrokerReadStats => handlers::admin::read_stats(self, body).await,
        }
    }
}

impl Service for Broker {
    fn request_bytes_max(&self) -> usize {
        let config = self.core.store().config();
        // A full batch plus the envelope; anything bigger is refused unread.
        config.batch_bytes_max.as_u64() as usize
            + config.message_bytes_max.as_u64() as usize
            + (1 << 20)
    }

    async fn handle(&self, peer: Arc<Peer>, request: Frame) -> Option<Frame> {
        quiver_net::envelope::answer(self.config.access, &peer, request, |code, body| {
            self.dispatch(code, body)
        })
        .await
    }
}

/// A store error as a failure: its stable code and message.
impl From<StoreError> for Failure {
    fn from(err: StoreError) -> Self {
        Failure::new(error_code(&err), err.to_string())
    }
}

/// The stable wire code of a store error.
pub fn error_code(err: &StoreError) -> ErrorCode {
    match err {
        StoreError::Invalid { code, .. } => match code {
            Refusal::InvalidArgument => ErrorCode::InvalidArgument,
            Refusal::BatchTooLarge => ErrorCode::BatchTooLarge,
            Refusal::MessageTooLarge => ErrorCode::MessageTooLarge,
            Refusal::ChecksumMismatch => ErrorCode::ChecksumMismatch,
            Refusal::TopicNotFound => ErrorCode::TopicNotFound,
            Refusal::TopicExists => ErrorCode::TopicExists,
            Refusal::QueueOutOfRange => ErrorCode::QueueOutOfRange,
            Refusal::OffsetRemoved => ErrorCode::OffsetRemoved,
            Refusal::OffsetOutOfRange => ErrorCode::OffsetOutOfRange,
            Refusal::MessageNotFound => ErrorCode::MessageNotFound,
            Refusal::MessageRemoved => ErrorCode::MessageRemoved,
            Refusal::SubscriptionConflict => ErrorCode::SubscriptionConflict,
            Refusal::GroupFenced => ErrorCode::GroupFenced,
            Refusal::GroupNotFound => ErrorCode::GroupNotFound,
            Refusal::FunctionNotFound => ErrorCode::FunctionNotFound,
            Refusal::InvalidModule => ErrorCode::InvalidModule,
            Refusal::ModuleTooLarge => ErrorCode::ModuleTooLarge,
            Refusal::ModuleMissing => ErrorCode::ModuleMissing,
        },
        StoreError::OutcomeUnknown(_) => ErrorCode::StoreOutcomeUnknown,
        StoreError::Fenced(_) => ErrorCode::StoreFenced,
        StoreError::Closed => ErrorCode::ShuttingDown,
        _ => ErrorCode::StoreError,
    }
}

/// The advertised address for a bound socket: the explicit one, or the bound address when it
/// is not a wildcard.
pub fn advertise_addr(bound: SocketAddr, explicit: Option<&str>) -> Result<String, String> {
    match explicit {
        Some(addr) => Ok(addr.to_owned()),
        None if bound.ip().is_unspecified() => Err(format!(
            "listening on the wildcard address {bound} needs --advertise HOST:PORT (the address clients connect to and that the TLS certificate names)"
        )),
        None => Ok(bound.to_string()),
    }
}
