//! A place in a topic's stream of publications, shared by the server that
//! numbers publications and the clients that recover from it (the client
//! side builds without the server).

/// A place in a topic's stream: the offset of a publication (0 before the
/// first), in the stream named by `epoch`. An offset means something only
/// with its epoch: a stream that was lost and made again has a new one.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Position {
    /// The publication's offset.
    pub offset: u64,
    /// The stream's name.
    pub epoch: String,
}
