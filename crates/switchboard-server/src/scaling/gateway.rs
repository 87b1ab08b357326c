//! The gateway protocol across nodes. Each node keeps its own connections' topics in its
//! [`crate::gateway::Registry`] and delivers the app bus's gateway messages to them; Redis
//! holds what the HTTP API answers from and a reaper needs: subscriptions per topic
//! (`delivered`), connections (admin close counts), each subject's topics (admin
//! unsubscribe counts), per-subject connection slots (`gateway_max_connections_per_subject`
//! cluster-wide) and each connection's goodbye presence frame, which the reaper of a dead
//! node publishes on `secure/inbound` so backends learn of every connection that went with
//! it. A publish's ack travels with it on the bus and is queued by the origin node once the
//! message is delivered there, so it still follows the sender's echo.
//!
//! ```
//! // Crate-internal. A gateway bus header: topic, binary flag, and the ack for handle 7.
//! let header = r#"{"s":9,"k":"g","c":"chat","b":true,"h":7,"a":"{}","n":"ab12"}"#;
//! assert!(serde_json::from_str::<serde_json::Value>(header).is_ok());
//! ```

use std::sync::Arc;
use std::sync::atomic::Ordering;

use switchboard_protocol::gateway::frames::INBOUND_TOPIC;
use switchboard_protocol::gateway::glob_matches;

use super::bus::Header;
use super::keys::Keys;
use super::{Inner, as_array, as_string, scripts, unavailable};
use crate::adapter::{AdapterError, TopicSubscribe};
use crate::gateway::{GatewayHandle, Outgoing};
use crate::pusher::app::App;

fn field(connection_id: &str, topic: &str) -> String {
    format!("{connection_id}|{topic}")
}

fn subject_topics(keys: &Keys, subject: &str) -> String {
    format!("{}{subject}", keys.gateway_subject_topics_base())
}

fn subject_slots(keys: &Keys, subject: &str) -> String {
    format!("{}{subject}", keys.gateway_subject_slots_base())
}

fn dirty(inner: &Inner, e: redis::RedisError) -> AdapterError {
    // The script may have run: the cluster may hold what this node does not (or the
    // reverse); the node fences once Redis answers, which rebuilds both.
    inner.dirty.store(true, Ordering::Release);
    unavailable(e)
}

/// Take a slot of `subject` (cluster-wide), when the app limits connections per subject.
pub(super) async fn reserve_subject(
    inner: &Inner,
    app: &App,
    subject: Option<&str>,
    limit: usize,
) -> Result<bool, AdapterError> {
    let Some(subject) = subject.filter(|_| limit > 0) else { return Ok(true) };
    let keys = inner.keys(app);
    let node = inner.node_id();
    let mut redis = inner.conn();
    let taken: i64 = scripts::GATEWAY_RESERVE
        .key(keys.node(&node))
        .key(subject_slots(&keys, subject))
        .key(keys.gateway_node_subjects(&node))
        .arg(&node)
        .arg(limit)
        .arg(subject)
        .invoke_async(&mut redis)
        .await
        .map_err(|e| dirty(inner, e))?;
    match taken {
        1 => Ok(true),
        0 => Ok(false),
        _ => {
            inner.dirty.store(true, Ordering::Release);
            Err(AdapterError::Fenced)
        }
    }
}

/// Give back a subject's slot taken on node `node`, in the background.
pub(super) fn release_subject_on(inner: &Arc<Inner>, app: &App, subject: Option<&str>, node: String) {
    let Some(subject) = subject.filter(|_| app.config.gateway_max_connections_per_subject > 0) else { return };
    let keys = inner.keys(app);
    let (slots, subjects, subject) =
        (subject_slots(&keys, subject), keys.gateway_node_subjects(&node), subject.to_owned());
    let inner2 = inner.clone();
    inner.tasks.spawn(async move {
        let mut redis = inner2.conn();
        let released: Result<i64, _> =
            scripts::GATEWAY_RELEASE.key(slots).key(subjects).arg(node).arg(subject).invoke_async(&mut redis).await;
        if let Err(e) = released {
            tracing::warn!(error = %e, "a gateway subject slot was not given back (the node rejoins)");
            inner2.dirty.store(true, Ordering::Release);
        }
    });
}

/// Give back a slot of a socket that never joined (taken under the current id).
pub(super) fn release_subject(inner: &Arc<Inner>, app: &App, subject: Option<&str>) {
    release_subject_on(inner, app, subject, inner.node_id());
}

fn joined_under(inner: &Inner, app: &App, id: u64) -> Option<String> {
    let nodes = inner.gateway_nodes.lock().unwrap_or_else(|p| p.into_inner());
    nodes.get(&(app.config.id.clone(), id)).cloned()
}

/// Register a connection here and in the cluster. On failure its subject slot is given back
/// and nothing of it stays in Redis.
pub(super) async fn join(
    inner: &Arc<Inner>,
    app: &App,
    handle: &Arc<GatewayHandle>,
    subject: Option<&str>,
    automatic: &[String],
    goodbye: String,
) -> Result<(), AdapterError> {
    let node = inner.node_id();
    if let Err(e) = inner.bus_ready().await {
        release_subject_on(inner, app, subject, node);
        return Err(e);
    }
    // Local first, so the bus messages ordered after the join find it.
    app.gateway.join_pending(handle.clone(), subject.map(str::to_owned), automatic);
    let keys = inner.keys(app);
    let node = inner.node_id();
    let mut redis = inner.conn();
    let mut script = scripts::GATEWAY_JOIN.prepare_invoke();
    script
        .key(keys.node(&node))
        .key(keys.gateway_node_connections(&node))
        .key(keys.gateway_connections())
        .key(keys.gateway_topics())
        .key(keys.gateway_node_subscriptions(&node))
        .key(keys.seq())
        .arg(&*handle.socket_id)
        .arg(&node)
        .arg(subject.unwrap_or(""))
        .arg(goodbye);
    for topic in automatic {
        script.arg(topic);
    }
    let joined: Result<i64, _> = script.invoke_async(&mut redis).await;
    let error = match joined {
        Ok(snap) if snap >= 0 && inner.node_id() == node => {
            inner
                .gateway_nodes
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert((app.config.id.clone(), handle.id), node);
            let topics: Vec<&str> = automatic.iter().map(String::as_str).collect();
            app.gateway.go_live(handle.id, &topics, snap as u64);
            return Ok(());
        }
        Ok(snap) => {
            if snap >= 0 {
                // Registered, but under an id fenced meanwhile: take it out again, so no
                // reaper announces the end of a connection backends never heard of.
                let topics: Vec<&str> = automatic.iter().map(String::as_str).collect();
                let _ = unsubscribe_in_cluster(inner, &keys, &node, &handle.socket_id, &topics, true).await;
            }
            inner.dirty.store(true, Ordering::Release);
            AdapterError::Fenced
        }
        Err(e) => dirty(inner, e),
    };
    app.gateway.leave(handle.id);
    release_subject_on(inner, app, subject, node);
    Err(error)
}

/// Take a connection off every topic, here and in the cluster, and give back its slot.
/// True if this leave is the one to announce the disconnect (a reaper did not, first).
pub(super) async fn leave(inner: &Arc<Inner>, app: &App, id: u64) -> Result<bool, AdapterError> {
    let node = {
        let mut nodes = inner.gateway_nodes.lock().unwrap_or_else(|p| p.into_inner());
        nodes.remove(&(app.config.id.clone(), id))
    };
    let Some((connection_id, subject, topics)) = app.gateway.leave(id) else { return Ok(false) };
    let node = node.unwrap_or_else(|| inner.node_id());
    let keys = inner.keys(app);
    let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
    let (_, owned) = unsubscribe_in_cluster(inner, &keys, &node, &connection_id, &topics, true)
        .await
        .map_err(|e| dirty(inner, e))?;
    release_subject_on(inner, app, subject.as_deref(), node);
    Ok(owned)
}

/// Subscribe a connection to one of its own topics.
pub(super) async fn subscribe(
    inner: &Inner,
    app: &App,
    handle: &GatewayHandle,
    subject: Option<&str>,
    topic: &str,
    limit: usize,
) -> Result<TopicSubscribe, AdapterError> {
    inner.bus_ready().await?;
    let Some(node) = joined_under(inner, app, handle.id) else { return Err(AdapterError::Fenced) };
    match app.gateway.subscribe_pending(handle.id, topic, limit) {
        Err(()) => return Ok(TopicSubscribe::OverLimit),
        Ok(false) => return Ok(TopicSubscribe::AlreadySubscribed),
        Ok(true) => {}
    }
    let keys = inner.keys(app);
    let subject = subject.unwrap_or("");
    let mut redis = inner.conn();
    let added: Result<i64, _> = scripts::GATEWAY_SUBSCRIBE
        .key(keys.gateway_node_subscriptions(&node))
        .key(keys.gateway_topics())
        .key(subject_topics(&keys, subject))
        .key(keys.seq())
        .key(keys.gateway_connections())
        .arg(field(&handle.socket_id, topic))
        .arg(topic)
        .arg(subject)
        .arg(&*handle.socket_id)
        .arg(&node)
        .invoke_async(&mut redis)
        .await;
    match added {
        Ok(snap) if snap >= 0 => {
            if !app.gateway.go_live(handle.id, &[topic], snap as u64) {
                // Unsubscribed here meanwhile (an admin unsubscribe overtook it): undo it there.
                unsubscribe_in_cluster(inner, &keys, &node, &handle.socket_id, &[topic], false)
                    .await
                    .map_err(|e| dirty(inner, e))?;
            }
            Ok(TopicSubscribe::Added)
        }
        Ok(_) => {
            app.gateway.unsubscribe(handle.id, topic);
            Err(AdapterError::Fenced)
        }
        Err(e) => {
            app.gateway.unsubscribe(handle.id, topic);
            Err(dirty(inner, e))
        }
    }
}

/// Run the unsubscribe script for `topics` of connection `connection_id` (and, `leaving`,
/// the connection itself). Returns (subscriptions ended, whether it removed the connection).
async fn unsubscribe_in_cluster(
    inner: &Inner,
    keys: &Keys,
    node: &str,
    connection_id: &str,
    topics: &[&str],
    leaving: bool,
) -> Result<(i64, bool), redis::RedisError> {
    let mut redis = inner.conn();
    let mut script = scripts::GATEWAY_UNSUBSCRIBE.prepare_invoke();
    script
        .key(keys.gateway_topics())
        .key(keys.gateway_connections())
        .arg(connection_id)
        .arg(keys.gateway_subject_topics_base())
        .arg(if leaving { "1" } else { "0" })
        .arg(keys.gateway_node_subscriptions_base())
        .arg(keys.gateway_node_connections_base())
        .arg(node);
    for topic in topics {
        script.arg(*topic);
    }
    let (ended, owned): (i64, i64) = script.invoke_async(&mut redis).await?;
    Ok((ended, owned == 1))
}

/// Unsubscribe a connection from a topic.
pub(super) async fn unsubscribe_topic(
    inner: &Inner,
    app: &App,
    handle: &GatewayHandle,
    topic: &str,
) -> Result<bool, AdapterError> {
    if !app.gateway.unsubscribe(handle.id, topic) {
        return Ok(false);
    }
    let keys = inner.keys(app);
    let node = joined_under(inner, app, handle.id).unwrap_or_else(|| inner.node_id());
    unsubscribe_in_cluster(inner, &keys, &node, &handle.socket_id, &[topic], false)
        .await
        .map_err(|e| dirty(inner, e))?;
    Ok(true)
}

/// Publish on the app's bus; the answer is the topic's subscriptions cluster-wide.
pub(super) async fn publish(
    inner: &Inner,
    app: &App,
    topic: &str,
    frame: &Outgoing,
    ack: Option<(u64, Outgoing)>,
) -> Result<usize, AdapterError> {
    let keys = inner.keys(app);
    let node = inner.node_id();
    let (h, a) = match &ack {
        Some((id, ack)) => (Some(*id), Some(String::from_utf8_lossy(&ack.frame).into_owned().into())),
        None => (None, None),
    };
    let header = Header { c: Some(topic.into()), b: frame.binary, h, a, ..Header::new("g", &node) };
    let mut redis = inner.conn();
    let delivered: i64 = scripts::GATEWAY_PUBLISH
        .key(keys.seq())
        .key(keys.gateway_topics())
        .arg(keys.bus())
        .arg(header.tail())
        .arg(&frame.frame[..])
        .arg(topic)
        .invoke_async(&mut redis)
        .await
        .map_err(unavailable)?;
    Ok(delivered.max(0) as usize)
}

/// Admin close of one connection or all, on every node.
pub(super) async fn close(
    inner: &Inner,
    app: &App,
    connection_id: Option<&str>,
    code: u16,
    reason: &str,
) -> Result<usize, AdapterError> {
    let keys = inner.keys(app);
    let node = inner.node_id();
    let header = Header { x: connection_id.map(Into::into), ..Header::new("gx", &node) };
    let frame = serde_json::json!({ "code": code, "reason": reason }).to_string();
    let mut redis = inner.conn();
    let closed: i64 = scripts::GATEWAY_CLOSE
        .key(keys.seq())
        .key(keys.gateway_connections())
        .arg(keys.bus())
        .arg(header.tail())
        .arg(connection_id.unwrap_or(""))
        .arg(frame)
        .invoke_async(&mut redis)
        .await
        .map_err(unavailable)?;
    Ok(closed.max(0) as usize)
}

/// Admin unsubscribe of a subject, on every node; counted from the subject's subscriptions
/// read in the same script.
pub(super) async fn unsubscribe_subject(
    inner: &Inner,
    app: &App,
    subject: &str,
    patterns: &[String],
) -> Result<usize, AdapterError> {
    let keys = inner.keys(app);
    let node = inner.node_id();
    let header = Header { u: Some(subject.into()), ..Header::new("gu", &node) };
    let frame = serde_json::to_string(patterns).unwrap_or_else(|_| "[]".to_owned());
    let mut redis = inner.conn();
    let members: redis::Value = scripts::GATEWAY_UNSUBSCRIBE_SUBJECT
        .key(keys.seq())
        .key(subject_topics(&keys, subject))
        .arg(keys.bus())
        .arg(header.tail())
        .arg(frame)
        .invoke_async(&mut redis)
        .await
        .map_err(unavailable)?;
    let matched = as_array(&members)
        .iter()
        .filter_map(as_string)
        .filter(|member| {
            let topic = member.split_once('|').map_or("", |(_, topic)| topic);
            patterns.iter().any(|pattern| glob_matches(pattern, topic))
        })
        .count();
    Ok(matched)
}

/// A bus message asked this node to unsubscribe `subject` from `patterns`: done here, then
/// the ended subscriptions leave the cluster's counts (in the background).
pub(super) fn on_unsubscribe_subject(inner: &Arc<Inner>, app: &Arc<App>, subject: &str, patterns: &[String]) {
    let ended = app.gateway.unsubscribe_subject_ended(subject, patterns);
    if ended.is_empty() {
        return;
    }
    let (inner2, keys) = (inner.clone(), inner.keys(app));
    let nodes: Vec<String> = {
        let joined = inner.gateway_nodes.lock().unwrap_or_else(|p| p.into_inner());
        let app_id = app.config.id.clone();
        ended
            .iter()
            .map(|(_, _, id)| joined.get(&(app_id.clone(), *id)).cloned().unwrap_or_else(|| inner.node_id()))
            .collect()
    };
    inner.tasks.spawn(async move {
        for ((connection_id, topic, _), node) in ended.into_iter().zip(nodes) {
            if let Err(e) =
                unsubscribe_in_cluster(&inner2, &keys, &node, &connection_id, &[topic.as_str()], false).await
            {
                tracing::warn!(error = %e, "an admin unsubscribe did not reach the cluster (the node rejoins)");
                inner2.dirty.store(true, Ordering::Release);
                return;
            }
        }
    });
}

/// Reap a dead node's gateway state; backends get each of its connections' goodbye.
pub(super) async fn reap(inner: &Inner, keys: &Keys, node: &str) -> Result<usize, redis::RedisError> {
    let header = Header { c: Some(INBOUND_TOPIC.into()), ..Header::new("g", node) };
    let mut redis = inner.conn();
    let connections: i64 = scripts::GATEWAY_REAP
        .key(keys.gateway_node_subscriptions(node))
        .key(keys.gateway_node_connections(node))
        .key(keys.gateway_connections())
        .key(keys.gateway_topics())
        .key(keys.gateway_node_subjects(node))
        .key(keys.seq())
        .arg(node)
        .arg(keys.gateway_subject_topics_base())
        .arg(keys.gateway_subject_slots_base())
        .arg(keys.bus())
        .arg(header.tail())
        .invoke_async(&mut redis)
        .await?;
    Ok(connections.max(0) as usize)
}
