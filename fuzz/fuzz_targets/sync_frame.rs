//! Fuzzes the decoder of the parent/child sync protocol
//! (engine/src/protocol/messages.rs): any frame is a message or a clean
//! refusal, never a panic, and never more memory than the frame describes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|frame: &[u8]| {
    let (to_parent, to_child) = kennel_engine::decode_sync_frame(frame);
    // The two directions share no message, so no frame is both.
    assert!(!(to_parent && to_child));
});
