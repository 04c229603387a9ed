//! [`MessageQueue`]: one queue of a topic on one broker, and the queues a route lists.

use std::fmt;

use quiver_proto::requests::route::TopicRoute;

/// One message queue: queue `queue_id` of `topic` on broker `broker_name` (queue ids are per
/// broker, so a queue is named by all three).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageQueue {
    /// Topic.
    pub topic: String,
    /// Broker serving the queue.
    pub broker_name: String,
    /// Queue id on that broker.
    pub queue_id: u32,
}

impl fmt::Display for MessageQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}#{}", self.topic, self.broker_name, self.queue_id)
    }
}

/// A queue and the address of its broker, as one route lists them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RoutedQueue {
    pub(crate) queue: MessageQueue,
    pub(crate) addr: String,
    pub(crate) writable: bool,
}

/// Every queue of `route` whose broker has an address in it, in route order.
pub(crate) fn routed_queues(route: &TopicRoute) -> Vec<RoutedQueue> {
    route
        .queues
        .iter()
        .filter_map(|q| {
            let addr = &route
                .brokers
                .iter()
                .find(|b| b.broker_name == q.broker_name)?
                .addr;
            Some((0..q.queues).map(move |queue_id| RoutedQueue {
                queue: MessageQueue {
                    topic: route.topic.clone(),
                    broker_name: q.broker_name.clone(),
                    queue_id,
                },
                addr: addr.clone(),
                writable: q.writable,
            }))
        })
        .flatten()
        .collect()
}
