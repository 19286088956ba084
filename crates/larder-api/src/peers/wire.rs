//! What gateways say to each other on the PostgreSQL channel [`CHANNEL`]: one line of
//! space-separated fields per notification. Collection names and document ids never hold a
//! space (see `config::valid_name` and `doc::valid_id`), so the id can close a change.

/// The channel every gateway over one database listens on.
pub(crate) use crate::db::CHANNEL;

/// Sequence numbers in one acknowledgement, so that it stays far below PostgreSQL's 8000-byte
/// payload limit.
const ACKS_PER_MESSAGE: usize = 256;

/// One notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Message<'a> {
    /// A committed write.
    Change {
        /// The gateway that wrote it.
        writer: &'a str,
        /// The writer's sequence number of the change.
        seq: u64,
        /// The writer's wall clock when it wrote, in Unix microseconds.
        emitted_us: u64,
        /// The version written; 0 for a delete.
        version: i64,
        collection: &'a str,
        id: &'a str,
    },
    /// `from` has dropped its copies of the writer's changes `seqs`.
    Ack {
        from: &'a str,
        writer: &'a str,
        seqs: Vec<u64>,
    },
    /// `from` is alive and listening.
    Ping { from: &'a str, seq: u64 },
    /// `from` stops: it serves nothing cached any more.
    Bye { from: &'a str },
}

impl<'a> Message<'a> {
    /// The notification's payload.
    pub(crate) fn encode(&self) -> String {
        match self {
            Self::Change {
                writer,
                seq,
                emitted_us,
                version,
                collection,
                id,
            } => format!("c {writer} {seq} {emitted_us} {version} {collection} {id}"),
            Self::Ack { from, writer, seqs } => {
                let seqs: Vec<String> = seqs.iter().map(u64::to_string).collect();
                format!("a {from} {writer} {}", seqs.join(","))
            }
            Self::Ping { from, seq } => format!("p {from} {seq}"),
            Self::Bye { from } => format!("b {from}"),
        }
    }

    /// A payload read back; `None` for anything else on the channel.
    pub(crate) fn parse(payload: &'a str) -> Option<Self> {
        let mut fields = payload.split(' ');
        let kind = fields.next()?;
        let from = fields.next().filter(|f| !f.is_empty())?;
        let message = match kind {
            "c" => Self::Change {
                writer: from,
                seq: fields.next()?.parse().ok()?,
                emitted_us: fields.next()?.parse().ok()?,
                version: fields.next()?.parse().ok()?,
                collection: fields.next().filter(|f| !f.is_empty())?,
                id: fields.next().filter(|f| !f.is_empty())?,
            },
            "a" => Self::Ack {
                from,
                writer: fields.next()?,
                seqs: fields
                    .next()?
                    .split(',')
                    .map(str::parse)
                    .collect::<Result<_, _>>()
                    .ok()?,
            },
            "p" => Self::Ping {
                from,
                seq: fields.next()?.parse().ok()?,
            },
            "b" => Self::Bye { from },
            _ => return None,
        };
        fields.next().is_none().then_some(message)
    }
}

/// The acknowledgements of `seqs` to `writer`, as few payloads as fit.
pub(crate) fn acks(from: &str, writer: &str, seqs: &[u64]) -> Vec<String> {
    seqs.chunks(ACKS_PER_MESSAGE)
        .map(|chunk| {
            Message::Ack {
                from,
                writer,
                seqs: chunk.to_vec(),
            }
            .encode()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip() {
        let cases = [
            (
                Message::Change {
                    writer: "w1",
                    seq: 7,
                    emitted_us: 1_700_000_000_000_000,
                    version: 0,
                    collection: "books",
                    id: "a.b~c-d_e",
                },
                "c w1 7 1700000000000000 0 books a.b~c-d_e",
            ),
            (
                Message::Ack {
                    from: "r",
                    writer: "w1",
                    seqs: vec![3, 4, 9],
                },
                "a r w1 3,4,9",
            ),
            (Message::Ping { from: "g", seq: 12 }, "p g 12"),
            (Message::Bye { from: "g" }, "b g"),
        ];
        for (message, text) in cases {
            assert_eq!(message.encode(), text);
            assert_eq!(Message::parse(text), Some(message), "{text}");
        }
    }

    #[test]
    fn anything_else_is_ignored() {
        for text in [
            "",
            "x g 1",
            "p",
            "p  1",
            "p g",
            "p g one",
            "p g 1 extra",
            "c w 1 2 3 books",
            "c w 1 2 3 books a b",
            "a r w 1,,2",
        ] {
            assert_eq!(Message::parse(text), None, "{text:?}");
        }
    }

    #[test]
    fn many_acks_are_split() {
        let seqs: Vec<u64> = (0..600).collect();
        let out = acks("r", "w", &seqs);
        assert_eq!(out.len(), 3);
        assert!(out.iter().all(|p| p.len() < 8000));
        let back: Vec<u64> = out
            .iter()
            .flat_map(|p| match Message::parse(p) {
                Some(Message::Ack { seqs, .. }) => seqs,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(back, seqs);
    }
}
