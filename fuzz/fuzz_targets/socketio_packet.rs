//! Fuzz target: `switchboard_protocol::fuzz::socketio_packet` (see that module for what it checks).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| switchboard_protocol::fuzz::socketio_packet(data));
