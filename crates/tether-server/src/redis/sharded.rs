//! Sharded pub/sub on a Redis Cluster (Redis 7+): a topic publication is
//! `SPUBLISH`ed by the history script to the topic's shard channel, which
//! lives in the topic's slot, and stays inside that shard instead of
//! crossing the cluster bus to every node; a process `SSUBSCRIBE`s to the
//! topics its clients follow, and only to them.
//!
//! What the hub says it follows arrives here as [`Follow`] commands, in
//! the hub's order, and one task applies them to the cluster connection:
//! a topic followed before a [`Follow::Barrier`] is subscribed by the time
//! the barrier is answered, so a history read made after it misses
//! nothing. Publications of one topic travel one path (its shard), and
//! their offsets order them and show any gap; publications of different
//! topics share no order, which is why sharding needs history.
//!
//! The link is checked like the classic subscription: a `PING` to every
//! primary each health interval. A lost node, an unanswered `PING` or a
//! refused `SSUBSCRIBE` ends the connection; the next one subscribes to
//! every followed topic again and reads from the streams what was
//! published meanwhile.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use redis::cluster_routing::{MultipleNodeRoutingInfo, ResponsePolicy, RoutingInfo};
use redis::{PushInfo, PushKind};
use tokio::sync::{mpsc, oneshot, watch};

use super::{backoff, catch_up, receive, redact, Context, Ended};
use crate::fanout::{Frame, Receiver, Target};

/// What the hub asks of the sharded subscription.
#[derive(Debug)]
pub(super) enum Follow {
    /// Subscribe to this topic.
    Start(String),
    /// Unsubscribe from it.
    Stop(String),
    /// Answer `true` once every topic followed before is subscribed;
    /// `false` if the link is down.
    Barrier(oneshot::Sender<bool>),
}

/// Keeps the sharded subscription for as long as the engine lives.
pub(super) async fn run(
    context: Context,
    mut receiver: Receiver,
    mut commands: mpsc::UnboundedReceiver<Follow>,
    mut stopped: watch::Receiver<()>,
) {
    let Context { config, status, links, .. } = &context;
    let mut followed = HashSet::new();
    let mut backoff = backoff();
    loop {
        let ended = tokio::select! {
            ended = session(&context, &mut receiver, &mut followed, &mut commands, &mut backoff) => ended,
            _ = stopped.changed() => Ended::Stopped,
        };
        links.set(&links.sharded, false, status, config);
        let Ended::Failed(error) = ended else { return };
        let delay = backoff.next_delay().unwrap_or(Duration::from_secs(5));
        tracing::warn!(url = %redact(&config.url), %error, "redis: sharded subscription lost; retrying in {delay:?}");
        // Meanwhile the hub's changes are noted, and barriers told no.
        let sleep = tokio::time::sleep(delay);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                () = &mut sleep => break,
                command = commands.recv() => match command {
                    None => return,
                    Some(command) => note(command, &mut followed, &mut receiver),
                },
                _ = stopped.changed() => return,
            }
        }
    }
}

/// Applies a command while there is no connection.
fn note(command: Follow, followed: &mut HashSet<String>, receiver: &mut Receiver) {
    match command {
        Follow::Start(topic) => {
            followed.insert(topic);
        }
        Follow::Stop(topic) => {
            followed.remove(&topic);
            receiver.forget(&topic);
        }
        Follow::Barrier(answer) => {
            let _ = answer.send(false);
        }
    }
}

/// One cluster connection, from subscribing to every followed topic until
/// it fails.
async fn session(
    context: &Context,
    receiver: &mut Receiver,
    followed: &mut HashSet<String>,
    commands: &mut mpsc::UnboundedReceiver<Follow>,
    backoff: &mut tether_proto::backoff::Backoff,
) -> Ended {
    let Context { client, config, status, links } = context;
    let timeout = config.health_timeout;
    let (pushed, mut pushes) = mpsc::unbounded_channel::<PushInfo>();
    let cluster = match config.cluster_client(Some(pushed)) {
        Ok(cluster) => cluster,
        Err(error) => return Ended::Failed(error.to_string()),
    };
    let mut connection = match tokio::time::timeout(timeout, cluster.get_async_connection()).await {
        Ok(Ok(connection)) => connection,
        Ok(Err(error)) => return Ended::Failed(error.to_string()),
        Err(_) => return Ended::Failed(format!("no answer within {timeout:?}")),
    };
    // Every followed topic, each on its own slot's node, all at once.
    let subscribing = followed.iter().map(|topic| {
        let mut connection = connection.clone();
        let channel = config.channel(&Target::Topic(topic.clone()));
        async move { connection.ssubscribe(channel).await }
    });
    match tokio::time::timeout(timeout, futures_util::future::join_all(subscribing)).await {
        Ok(results) => {
            if let Some(Err(error)) = results.into_iter().find(Result::is_err) {
                return Ended::Failed(format!("SSUBSCRIBE: {error}"));
            }
        }
        Err(_) => return Ended::Failed(format!("no answer to SSUBSCRIBE within {timeout:?}")),
    }
    let mut reader = match config.link(client).await {
        Ok(reader) => Some(reader),
        Err(error) => return Ended::Failed(error),
    };
    if let Some(reader) = &mut reader {
        if let Err(error) = catch_up(reader, config, receiver).await {
            return Ended::Failed(error);
        }
    }
    backoff.reset();
    links.set(&links.sharded, true, status, config);
    let mut check = tokio::time::interval(config.health_interval);
    check.tick().await;
    loop {
        tokio::select! {
            push = pushes.recv() => {
                let Some(PushInfo { kind, data }) = push else { return Ended::Failed("connection closed".to_owned()) };
                match kind {
                    PushKind::SMessage => {
                        let Some((topic, frame)) = publication(config, &data) else { continue };
                        // One that was on its way when the topic was let go.
                        if !followed.contains(&topic) {
                            continue;
                        }
                        if let Err(error) = receive(&mut reader, config, receiver, Target::Topic(topic), frame).await {
                            return Ended::Failed(error);
                        }
                    }
                    PushKind::Disconnection => return Ended::Failed("a cluster node's connection was lost".to_owned()),
                    _ => {}
                }
            }
            command = commands.recv() => {
                let Some(command) = command else { return Ended::Stopped };
                match command {
                    Follow::Start(topic) => {
                        if followed.insert(topic.clone()) {
                            let channel = config.channel(&Target::Topic(topic));
                            match tokio::time::timeout(timeout, connection.ssubscribe(channel)).await {
                                Ok(Ok(())) => {}
                                Ok(Err(error)) => return Ended::Failed(format!("SSUBSCRIBE: {error}")),
                                Err(_) => return Ended::Failed(format!("no answer to SSUBSCRIBE within {timeout:?}")),
                            }
                        }
                    }
                    Follow::Stop(topic) => {
                        if followed.remove(&topic) {
                            receiver.forget(&topic);
                            let channel = config.channel(&Target::Topic(topic));
                            match tokio::time::timeout(timeout, connection.sunsubscribe(channel)).await {
                                Ok(Ok(())) => {}
                                Ok(Err(error)) => return Ended::Failed(format!("SUNSUBSCRIBE: {error}")),
                                Err(_) => return Ended::Failed(format!("no answer to SUNSUBSCRIBE within {timeout:?}")),
                            }
                        }
                    }
                    Follow::Barrier(answer) => {
                        let _ = answer.send(true);
                    }
                }
            }
            _ = check.tick() => {
                let every_primary = RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllMasters, Some(ResponsePolicy::AllSucceeded)));
                match tokio::time::timeout(timeout, connection.route_command(redis::cmd("PING"), every_primary)).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(error)) => return Ended::Failed(format!("PING: {error}")),
                    Err(_) => return Ended::Failed(format!("no answer to PING within {timeout:?} (a half-open link)")),
                }
            }
        }
    }
}

/// The topic and frame of a shard channel message (`[channel, payload]`).
fn publication(config: &super::RedisConfig, data: &[redis::Value]) -> Option<(String, Frame)> {
    let [channel, payload] = data else { return None };
    let channel: String = redis::from_redis_value(channel.clone()).ok()?;
    let payload: Vec<u8> = redis::from_redis_value(payload.clone()).ok()?;
    let Some(Some(Target::Topic(topic))) = config.target(&channel) else { return None };
    Some((topic, Frame::decode(&payload)?))
}

/// Waits for `barrier`'s answer, at most `limit`.
pub(super) async fn passed(barrier: oneshot::Receiver<bool>, limit: Duration) -> bool {
    let started = Instant::now();
    let passed = matches!(tokio::time::timeout(limit, barrier).await, Ok(Ok(true)));
    if !passed {
        tracing::debug!(waited = ?started.elapsed(), "redis: the sharded subscription is not up");
    }
    passed
}
