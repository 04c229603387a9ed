//! A broadcasting member's offsets, kept in a local file: `<dir>/<group>.offsets` with one
//! line per queue, `topic broker queue next_offset`. Written whole to a temporary file,
//! synced, then renamed over the old one, so a crash leaves the old or the new file.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::ClientError;
use crate::queue::MessageQueue;

/// Offsets by queue, and where they live.
pub(crate) struct StateFile {
    path: PathBuf,
}

impl StateFile {
    /// The file of `group` in `dir` (created if missing).
    pub(crate) fn new(dir: &Path, group: &str) -> Result<Self, ClientError> {
        std::fs::create_dir_all(dir).map_err(|err| {
            ClientError::Invalid(format!(
                "cannot create the state directory {}: {err}",
                dir.display()
            ))
        })?;
        Ok(StateFile {
            path: dir.join(format!("{group}.offsets")),
        })
    }

    /// The saved offsets (none before the first save).
    pub(crate) fn load(&self) -> Result<BTreeMap<MessageQueue, u64>, ClientError> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
            Err(err) => {
                return Err(ClientError::Invalid(format!(
                    "cannot read {}: {err}",
                    self.path.display()
                )));
            }
        };
        let mut offsets = BTreeMap::new();
        for (n, line) in text.lines().enumerate() {
            let fields: Vec<&str> = line.split(' ').collect();
            let parsed =
                match fields.as_slice() {
                    [topic, broker, queue, offset] => queue
                        .parse()
                        .ok()
                        .zip(offset.parse().ok())
                        .map(|(queue_id, offset)| {
                            let queue = MessageQueue {
                                topic: (*topic).to_owned(),
                                broker_name: (*broker).to_owned(),
                                queue_id,
                            };
                            (queue, offset)
                        }),
                    _ => None,
                };
            let (queue, offset) = parsed.ok_or_else(|| {
                ClientError::Invalid(format!(
                    "{} line {}: expected `topic broker queue offset`, found {line:?}; fix or delete the file (the member then starts from its --from position)",
                    self.path.display(),
                    n + 1
                ))
            })?;
            offsets.insert(queue, offset);
        }
        Ok(offsets)
    }

    /// Replaces the saved offsets.
    pub(crate) fn save(&self, offsets: &BTreeMap<MessageQueue, u64>) -> Result<(), ClientError> {
        let fail = |err: std::io::Error| {
            ClientError::Invalid(format!("cannot save {}: {err}", self.path.display()))
        };
        let tmp = self.path.with_extension("offsets.tmp");
        let mut file = std::fs::File::create(&tmp).map_err(fail)?;
        for (queue, offset) in offsets {
            writeln!(
                file,
                "{} {} {} {offset}",
                queue.topic, queue.broker_name, queue.queue_id
            )
            .map_err(fail)?;
        }
        file.sync_all().map_err(fail)?;
        std::fs::rename(&tmp, &self.path).map_err(fail)?;
        if let Some(dir) = self.path.parent() {
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(fail)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_survive_a_save_and_a_load() {
        let dir = tempfile::tempdir().unwrap();
        let file = StateFile::new(dir.path(), "g").unwrap();
        assert!(file.load().unwrap().is_empty());
        let queue = |q| MessageQueue {
            topic: "t".into(),
            broker_name: "b".into(),
            queue_id: q,
        };
        let offsets: BTreeMap<_, _> = [(queue(0), 7), (queue(3), 42)].into_iter().collect();
        file.save(&offsets).unwrap();
        assert_eq!(file.load().unwrap(), offsets);
        std::fs::write(dir.path().join("g.offsets"), "t b zero 1\n").unwrap();
        let err = file.load().unwrap_err().to_string();
        assert!(err.contains("line 1"), "{err}");
    }
}
