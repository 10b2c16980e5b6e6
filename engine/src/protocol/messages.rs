//! What each side sends, and the decoder that refuses a frame no kennel
//! sends.

use nix::errno::Errno;
use serde::{Deserialize, Serialize};

use super::failure::ChildFailure;

#[derive(Debug, Serialize, Deserialize)]
pub enum ToChild {
    MapsWritten,
    /// The createRuntime hooks have run; the state document the
    /// container's own hooks read.
    HooksRan(String),
    /// The network is on its way; what the rootfs takes from it exists.
    NetworkStarted,
    /// The network namespace's interface is configured.
    NetworkUp,
}

#[derive(Debug, Serialize, Deserialize)]
pub enum ToParent {
    Failed(ChildFailure),
    /// Carries the pty master as an SCM_RIGHTS fd.
    PtyMaster,
    /// Created: everything is set up and the process waits for `start`.
    Ready,
    /// The namespaces exist: run the createRuntime hooks, then answer
    /// with `ToChild::HooksRan`.
    RunHooks,
    /// In the network namespace: start pasta, or have kennel-net link it
    /// to the bridge (carrying a NETLINK_ROUTE socket made there as an
    /// SCM_RIGHTS fd), then answer with `ToChild::NetworkStarted` and
    /// `ToChild::NetworkUp`.
    StartNetwork,
}

/// The largest message either side accepts. The biggest real one is
/// `ToChild::HooksRan`'s state document, which holds the spec's
/// annotations; anything longer is refused (and discarded) before a buffer
/// is sized from the peer's word.
pub const MAX_MESSAGE: usize = 128 << 10;

/// Decodes one message: an oversized, truncated or unknown one is an
/// error, never a panic, and nothing is allocated beyond what the bytes
/// describe.
pub fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> nix::Result<T> {
    if bytes.len() > MAX_MESSAGE {
        return Err(Errno::EMSGSIZE);
    }
    serde_json::from_slice(bytes).map_err(|_| Errno::EBADMSG)
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// Frames no kennel sends: truncated, unknown variants, wrong types,
    /// numbers out of range, bytes that are not UTF-8, nesting deep enough
    /// to exhaust a recursive parser's stack, trailing garbage.
    pub fn malformed_frames() -> Vec<Vec<u8>> {
        let mut frames: Vec<Vec<u8>> = [
            "{",
            "null",
            "0",
            "[]",
            "{}",
            "\"Unknown\"",
            "\"ready\"",
            "\"Ready\" trailing",
            "\"Ready\"\"Ready\"",
            "{\"Failed\":{}}",
            "{\"Failed\":null}",
            "{\"Failed\":{\"stage\":\"Nope\",\"errno\":1,\"path\":null,\"detail\":null}}",
            "{\"Failed\":{\"stage\":\"Mount\",\"errno\":99999999999,\"path\":null,\"detail\":null}}",
            "{\"Failed\":{\"stage\":\"Mount\",\"errno\":1.5,\"path\":null,\"detail\":null}}",
            "{\"Failed\":{\"stage\":\"Mount\",\"errno\":1,\"path\":7,\"detail\":null}}",
            "{\"HooksRan\":5}",
            "{\"HooksRan\":\"unterminated}",
            "{\"MapsWritten\":{\"MapsWritten\":{}}}",
            "\"\\ud800\"",
        ]
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .collect();
        frames.push(b"\"Re\xffady\"".to_vec());
        frames.push(b"\x00\x00\x00\x00".to_vec());
        frames.push(vec![b'['; 100_000]);
        frames.push(
            std::iter::repeat_n(&b"{\"HooksRan\":"[..], 5_000)
                .flatten()
                .copied()
                .collect(),
        );
        frames
    }

    #[test]
    fn malformed_frames_are_refused_without_a_panic() {
        for frame in malformed_frames() {
            let shown = String::from_utf8_lossy(&frame[..frame.len().min(60)]).to_string();
            assert_eq!(
                decode::<ToParent>(&frame).err(),
                Some(Errno::EBADMSG),
                "{shown}"
            );
            assert_eq!(
                decode::<ToChild>(&frame).err(),
                Some(Errno::EBADMSG),
                "{shown}"
            );
        }
    }

    #[test]
    fn an_oversized_frame_is_refused_before_it_is_parsed() {
        let frame = vec![b' '; MAX_MESSAGE + 1];
        assert_eq!(decode::<ToParent>(&frame).err(), Some(Errno::EMSGSIZE));
    }
}
