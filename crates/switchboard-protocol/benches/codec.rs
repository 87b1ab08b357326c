//! Hot paths of the protocol crate: frame decode and encode, signature verification and
//! presence snapshots. Run: `cargo bench -p switchboard-protocol --bench codec`.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use switchboard_protocol::frame::{encode_json_data_frame, encode_server_frame};
use switchboard_protocol::signature::{sign_channel, verify_channel};
use switchboard_protocol::{Frame, PackedFrame, PresenceRoster};

fn frames(c: &mut Criterion) {
    let payload_100 = format!(r#"{{"order":42,"status":"shipped","note":"{}"}}"#, "x".repeat(60));
    let payload_1000 = format!(r#"{{"order":42,"status":"shipped","note":"{}"}}"#, "x".repeat(960));
    for (name, payload) in [("100B", &payload_100), ("1000B", &payload_1000)] {
        let server_frame =
            encode_server_frame("App\\Events\\OrderShipped", Some("private-orders.42"), Some(payload), None);
        let mut group = c.benchmark_group(format!("frame/{name}"));
        group.throughput(Throughput::Bytes(server_frame.len() as u64));
        group.bench_function("decode_server_frame", |b| b.iter(|| Frame::decode(black_box(&server_frame))));
        group
            .bench_function("decode_server_frame_packed", |b| b.iter(|| PackedFrame::decode(black_box(&server_frame))));
        group.bench_function("encode_server_frame", |b| {
            b.iter(|| {
                encode_server_frame(
                    "App\\Events\\OrderShipped",
                    Some("private-orders.42"),
                    Some(black_box(payload)),
                    None,
                )
            })
        });
        let client_frame = encode_json_data_frame("client-typing", Some("presence-room"), Some(payload), None);
        group.bench_function("decode_client_frame", |b| b.iter(|| Frame::decode(black_box(&client_frame))));
        group.finish();
    }
}

fn signatures(c: &mut Criterion) {
    let data = r#"{"user_id":"42","user_info":{"name":"Ada"}}"#;
    let auth = sign_channel("key", "secret", "123.456", "presence-room", Some(data));
    c.bench_function("signature/verify_presence", |b| {
        b.iter(|| verify_channel("key", "secret", black_box(&auth), "123.456", "presence-room", Some(data)))
    });
}

fn presence(c: &mut Criterion) {
    let mut roster = PresenceRoster::default();
    for i in 0..100 {
        roster.add(&i.to_string(), r#"{"name":"member"}"#);
    }
    c.bench_function("presence/snapshot_100_members", |b| b.iter(|| black_box(&roster).subscription_data()));
}

criterion_group!(benches, frames, signatures, presence);
criterion_main!(benches);
