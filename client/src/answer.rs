//! Sans-IO checks of answers before the client does arithmetic with them or hands them on:
//! a faulty or hostile server gets an error that names what was wrong, never a panic or a
//! caller looping on an offset that does not advance.

use quiver_proto::requests::msg::{PullResponse, SendResponse};

use crate::error::ClientError;
use crate::producer::SendResult;
use crate::queue::MessageQueue;

/// The results of a send of `n_msgs` messages to `queue`: one id per message, offsets
/// `first_offset..first_offset + n_msgs` within `u64`.
pub(crate) fn send_results(
    queue: MessageQueue,
    response: &SendResponse,
    n_msgs: usize,
) -> Result<Vec<SendResult>, ClientError> {
    if response.msg_ids.len() != n_msgs {
        return Err(bad(format!(
            "broker of {queue} acknowledged {} messages for a batch of {n_msgs}",
            response.msg_ids.len()
        )));
    }
    let last = (n_msgs as u64).saturating_sub(1);
    if response.first_offset.checked_add(last).is_none() {
        return Err(bad(format!(
            "broker of {queue} acknowledged a batch of {n_msgs} at offset {}, past the largest offset",
            response.first_offset
        )));
    }
    Ok(response
        .msg_ids
        .iter()
        .enumerate()
        .map(|(idx, msg_id)| SendResult {
            msg_id: *msg_id,
            queue: queue.clone(),
            // Checked above: the last offset fits.
            offset: response.first_offset + idx as u64,
        })
        .collect())
}

/// A pull answer for `queue` from `offset` of at most `max_msgs` messages: messages in
/// increasing offset order from `offset` on, and a `next_offset` past the last one (so a
/// reader that follows `next_offset` always advances); `min_offset <= max_offset`.
pub(crate) fn check_pull(
    queue: &MessageQueue,
    offset: u64,
    max_msgs: u32,
    response: &PullResponse,
) -> Result<(), ClientError> {
    let fail = |what: String| Err(bad(format!("pull of {queue} from offset {offset}: {what}")));
    if response.min_offset > response.max_offset {
        return fail(format!(
            "the answer's range {}..{} is reversed",
            response.min_offset, response.max_offset
        ));
    }
    if response.messages.len() > max_msgs as usize {
        return fail(format!(
            "{} messages answered for at most {max_msgs}",
            response.messages.len()
        ));
    }
    let mut floor = offset;
    for msg in &response.messages {
        if msg.offset < floor {
            return fail(format!(
                "message at offset {} out of order (expected at least {floor})",
                msg.offset
            ));
        }
        floor = msg.offset.saturating_add(1);
    }
    if let Some(last) = response.messages.last()
        && response.next_offset <= last.offset
    {
        return fail(format!(
            "next offset {} does not pass the last message's offset {}",
            response.next_offset, last.offset
        ));
    }
    Ok(())
}

fn bad(what: String) -> ClientError {
    ClientError::BadAnswer(what)
}

#[cfg(test)]
mod tests;
