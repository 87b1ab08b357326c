//! The fuzz corpora, replayed on stable: every input `fuzz/corpus/<target>/` holds (seeds,
//! and what `scripts/fuzz` found), then seeded mutations of them, through the same entry
//! points the cargo-fuzz targets call. A bounded run: `MUTATIONS` per target in all.

use std::path::{Path, PathBuf};

use switchboard_protocol::fuzz;

/// Mutated inputs run per target, spread over its corpus (at least 10 per input).
const MUTATIONS: usize = 100_000;

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus").join(target);
    let mut inputs: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.expect("corpus entry").path();
            let bytes = std::fs::read(&path).expect("corpus file");
            (path, bytes)
        })
        .collect();
    inputs.sort();
    assert!(inputs.len() >= 3, "{target}: the corpus holds seeds");
    inputs
}

/// Replay `target`'s corpus, then `MUTATIONS` mutations of each input: bytes inserted,
/// removed, replaced or duplicated, drawn from the input itself and from JSON's syntax.
fn replay(target: &str, run: fn(&[u8])) {
    let alphabet: &[u8] = br#"{}[]":,\ nul0e1-.x%&=[]"#;
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = |bound: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % bound.max(1) as u64) as usize
    };
    let inputs = corpus(target);
    let per_input = (MUTATIONS / inputs.len()).max(10);
    for (path, input) in inputs {
        let name = path.display().to_string();
        std::panic::catch_unwind(|| run(&input)).unwrap_or_else(|_| panic!("{name} fails"));
        if input.is_empty() {
            continue;
        }
        for round in 0..per_input {
            let mut bytes = input.clone();
            for _ in 0..1 + next(4) {
                let at = next(bytes.len() + 1);
                let byte = if next(2) == 0 { alphabet[next(alphabet.len())] } else { input[next(input.len())] };
                match next(4) {
                    0 => bytes.insert(at, byte),
                    1 if at < bytes.len() => drop(bytes.remove(at)),
                    2 if at < bytes.len() => bytes[at] = byte,
                    _ => {
                        let end = (at + next(16)).min(bytes.len());
                        let piece = bytes[at.min(end)..end].to_vec();
                        bytes.splice(at.min(end)..at.min(end), piece);
                    }
                }
            }
            if std::panic::catch_unwind(|| run(&bytes)).is_err() {
                panic!("{name}, mutation {round}: {:?}", String::from_utf8_lossy(&bytes));
            }
        }
    }
}

#[test]
fn pusher_frames() {
    replay("pusher_frame", fuzz::pusher_frame);
}

#[test]
fn phoenix_text_frames() {
    replay("phoenix_text", fuzz::phoenix_text);
}

#[test]
fn phoenix_binary_frames() {
    replay("phoenix_binary", fuzz::phoenix_binary);
}

#[test]
fn http_queries() {
    replay("http_query", fuzz::http_query);
}

#[test]
fn gateway_frames() {
    replay("gateway_frame", fuzz::gateway_frame);
}

#[test]
fn socketio_packets() {
    replay("socketio_packet", fuzz::socketio_packet);
}
