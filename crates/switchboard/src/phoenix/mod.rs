//! A Phoenix Channels client: one [`Socket`] (cheap to clone) in front of one connection
//! task, [`PhxChannel`]s whose `join`, `push` and `leave` resolve to the server's reply or a
//! timeout, and Presence synced as phoenix.js does.
//!
//! Behaviour follows `phoenix/assets/js/phoenix` (see `phoenix-protocol.md`): serializer V2
//! (`vsn=2.0.0`) or V1; a heartbeat every 30 s whose missing reply reconnects; reconnect
//! backoff 10, 50, 100, 150, 200, 250, 500, 1000, 2000 ms then 5 s; rejoin backoff 1, 2, 5 s
//! then 10 s; pushes made before the join (or while offline) are buffered, bounded, and sent
//! after the join; messages carrying a stale `join_ref` are dropped; `phx_error` rejoins,
//! `phx_close` closes; an "unmatched topic" reply fails the join at once.
//!
//! ```no_run
//! # async fn run() -> Result<(), switchboard::Error> {
//! use switchboard::phoenix::{Socket, SocketOptions};
//! let socket = Socket::connect(SocketOptions::new("ws://127.0.0.1:4000/socket")).await?;
//! let room = socket.channel("room:lobby", serde_json::json!({"username": "ada"}));
//! room.on("shout", |event| println!("{:?}", event.data()));
//! room.join().await?;
//! room.push("shout", serde_json::json!({"body": "hi", "name": "ada"})).await.ok();
//! # Ok(()) }
//! ```

mod socket;

pub use socket::{PhxChannel, PresenceHandle, Socket, SocketOptions};
pub use switchboard_protocol::phoenix::Vsn;

use std::time::Duration;

/// phoenix.js `reconnectAfterMs`: 10, 50, 100, 150, 200, 250, 500, 1000, 2000 ms, then 5 s.
///
/// ```
/// use std::time::Duration;
/// use switchboard::phoenix::reconnect_after;
/// assert_eq!(reconnect_after(1), Duration::from_millis(10));
/// assert_eq!(reconnect_after(9), Duration::from_millis(2000));
/// assert_eq!(reconnect_after(50), Duration::from_secs(5));
/// ```
pub fn reconnect_after(tries: u32) -> Duration {
    const TABLE: [u64; 9] = [10, 50, 100, 150, 200, 250, 500, 1000, 2000];
    Duration::from_millis(TABLE.get(tries.saturating_sub(1) as usize).copied().unwrap_or(5000))
}

/// phoenix.js `rejoinAfterMs`: 1, 2, 5 s, then 10 s.
///
/// ```
/// use std::time::Duration;
/// use switchboard::phoenix::rejoin_after;
/// assert_eq!(rejoin_after(1), Duration::from_secs(1));
/// assert_eq!(rejoin_after(4), Duration::from_secs(10));
/// ```
pub fn rejoin_after(tries: u32) -> Duration {
    const TABLE: [u64; 3] = [1000, 2000, 5000];
    Duration::from_millis(TABLE.get(tries.saturating_sub(1) as usize).copied().unwrap_or(10_000))
}
