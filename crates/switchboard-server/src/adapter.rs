//! The one interface every broadcast and every cross-socket query goes through.
//!
//! [`LocalAdapter`] serves a single process. A multi-node adapter (Redis pub/sub, as Reverb
//! scales) implements the same trait: `publish` fans out to every node, the queries
//! aggregate across nodes. Nothing else in the server touches another socket's queue.

use bytes::Bytes;
use switchboard_protocol::ChannelName;

use crate::app::{App, ChannelCounts};

/// Where broadcasts go and where channel state is read from.
pub trait Adapter: Send + Sync + 'static {
    /// Deliver an encoded frame to the subscribers of `channel`, except `except_socket_id`.
    /// `remember` marks a backend publish, which a cache channel keeps as its last event
    /// (client events are never cached). Returns how many local sockets it was queued for.
    fn publish(&self, app: &App, channel: &str, frame: Bytes, except_socket_id: Option<&str>, remember: bool) -> usize;
    /// Close every connection of `user_id` with 4009. Returns how many.
    fn terminate_user(&self, app: &App, user_id: &str) -> usize;
    /// Subscription and presence counts of one channel.
    fn channel_counts(&self, app: &App, channel: &str) -> ChannelCounts;
    /// Occupied channels starting with `prefix`.
    fn occupied_channels(&self, app: &App, prefix: &str) -> Vec<(String, ChannelCounts)>;
    /// Presence member ids of `channel`.
    fn presence_users(&self, app: &App, channel: &str) -> Vec<String>;
}

/// The single-process adapter: state lives in each [`App`].
#[derive(Debug, Default, Clone, Copy)]
pub struct LocalAdapter;

impl Adapter for LocalAdapter {
    fn publish(&self, app: &App, channel: &str, frame: Bytes, except_socket_id: Option<&str>, remember: bool) -> usize {
        let cache = remember && ChannelName::parse(channel).is_ok_and(|c| c.is_cache());
        app.deliver(channel, &frame, except_socket_id, cache)
    }

    fn terminate_user(&self, app: &App, user_id: &str) -> usize {
        app.terminate_user(user_id)
    }

    fn channel_counts(&self, app: &App, channel: &str) -> ChannelCounts {
        app.channel_counts(channel)
    }

    fn occupied_channels(&self, app: &App, prefix: &str) -> Vec<(String, ChannelCounts)> {
        app.occupied_channels(prefix)
    }

    fn presence_users(&self, app: &App, channel: &str) -> Vec<String> {
        app.presence_users(channel)
    }
}
