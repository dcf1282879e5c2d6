//! The Redis engine against a real `redis-server` (installed by
//! `scripts/install-deps.sh`; each test starts its own on a free port):
//! what reaches whom, what is counted when it cannot, authentication,
//! `rediss://`, prefixes, and a link that goes silent.

#![cfg(feature = "redis")]

use std::collections::HashMap;
use std::io::Write as _;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tether::fanout::{Deliver, Engine, Target};
use tether::history::{HistoryConfig, Position};
use tether::redis::{Redis, RedisConfig, SentinelConfig};
use tether::Message;

use tether_test_support::{RedisCluster, RedisServer};

/// What one engine delivered to its "clients", in order.
type Log = Arc<Mutex<Vec<(Target, String)>>>;

fn engine(config: RedisConfig) -> (Redis, Log) {
    let log: Log = Arc::default();
    let sink = log.clone();
    let deliver: Deliver = Arc::new(move |target, message: Message, _| {
        sink.lock().unwrap().push((target, message.as_text().unwrap_or_default().to_owned()));
    });
    (Redis::start(config, deliver).unwrap(), log)
}

/// What an engine with history delivered: text and place.
type Placed = Arc<Mutex<Vec<(String, Position)>>>;

fn engine_with_history(url: &str) -> (Redis, Placed) {
    engine_with_history_on(fast(url))
}

fn engine_with_history_on(mut config: RedisConfig) -> (Redis, Placed) {
    config.history = Some(HistoryConfig::new(1000, Duration::from_secs(60)));
    let log: Placed = Arc::default();
    let sink = log.clone();
    let deliver: Deliver = Arc::new(move |_, message: Message, position: Option<Position>| {
        let position = position.expect("topic publications with history carry their place");
        sink.lock().unwrap().push((message.as_text().unwrap_or_default().to_owned(), position));
    });
    (Redis::start(config, deliver).unwrap(), log)
}

fn fast(url: &str) -> RedisConfig {
    let mut config = RedisConfig::new(url);
    config.health_interval = Duration::from_millis(100);
    config.health_timeout = Duration::from_millis(300);
    config
}

async fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn texts(log: &Log) -> Vec<String> {
    log.lock().unwrap().iter().map(|(_, text)| text.clone()).collect()
}

/// Publishes as the hub does: through the engine, or locally when it
/// cannot take it.
fn publish(engine: &Redis, log: &Log, target: &Target, text: &str) -> bool {
    let taken = engine.publish(target, &Message::from(text));
    if !taken {
        log.lock().unwrap().push((target.clone(), text.to_owned()));
    }
    taken
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_process_gets_every_publication_once_in_order() {
    let redis = RedisServer::plain();
    let (a, a_log) = engine(fast(&redis.url()));
    let (b, b_log) = engine(fast(&redis.url()));
    wait_until("both up", Duration::from_secs(10), || a.status().is_up() && b.status().is_up()).await;
    let room = Target::Topic("room".to_owned());
    for n in 0..200 {
        assert!(publish(&a, &a_log, &room, &format!("a{n}")));
        assert!(publish(&b, &b_log, &Target::All, &format!("b{n}")));
    }
    wait_until("all delivered", Duration::from_secs(10), || {
        a_log.lock().unwrap().len() == 400 && b_log.lock().unwrap().len() == 400
    })
    .await;
    for log in [&a_log, &b_log] {
        let log = log.lock().unwrap();
        let from_a: Vec<&str> = log.iter().filter(|(_, t)| t.starts_with('a')).map(|(_, t)| t.as_str()).collect();
        let expected: Vec<String> = (0..200).map(|n| format!("a{n}")).collect();
        assert_eq!(from_a, expected, "once each, in order");
        assert!(log.iter().all(|(target, text)| (*target == room) == text.starts_with('a')), "on their own targets");
    }
    for engine in [&a, &b] {
        let status = engine.status();
        assert_eq!((status.published(), status.received()), (200, 400));
        assert_eq!((status.local_only(), status.unconfirmed(), status.missed(), status.replayed()), (0, 0, 0, 0));
    }
}

/// Redis is killed and restarted while two processes publish: each gets
/// all its own publications exactly once, in order; of the other's, every
/// one it accepted either arrives once, in order, or is counted missed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_while_two_servers_publish_loses_nothing_uncounted() {
    let port = tether_test_support::free_port();
    let mut redis = Some(RedisServer::start(port, &[]));
    let url = format!("redis://127.0.0.1:{port}");
    let engines = [engine(fast(&url)), engine(fast(&url))];
    wait_until("both up", Duration::from_secs(10), || engines.iter().all(|(e, _)| e.status().is_up())).await;
    let mut accepted = [Vec::new(), Vec::new()];
    let started = Instant::now();
    let mut n = 0;
    let mut outage_seen = false;
    let mut restarted = false;
    while started.elapsed() < Duration::from_secs(6) {
        let elapsed = started.elapsed();
        if elapsed > Duration::from_millis(1500) && redis.is_some() && !restarted {
            redis = None; // killed
        }
        if redis.is_none() && elapsed > Duration::from_millis(2500) {
            redis = Some(RedisServer::start(port, &[]));
            restarted = true;
        }
        outage_seen |= engines.iter().any(|(e, _)| !e.status().is_up());
        for (index, (engine, log)) in engines.iter().enumerate() {
            let text = format!("{index}:{n}");
            if publish(engine, log, &Target::All, &text) {
                accepted[index].push(text);
            }
        }
        n += 1;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert!(outage_seen && restarted);
    wait_until("both up again", Duration::from_secs(15), || engines.iter().all(|(e, _)| e.status().is_up())).await;
    // Heartbeats reveal the last gaps within a health interval.
    tokio::time::sleep(Duration::from_millis(600)).await;
    for (index, (engine, log)) in engines.iter().enumerate() {
        let other = 1 - index;
        let texts = texts(log);
        let own: Vec<&String> = texts.iter().filter(|t| t.starts_with(&format!("{index}:"))).collect();
        let expected_own: Vec<String> = (0..n).map(|k| format!("{index}:{k}")).collect();
        assert_eq!(own, expected_own.iter().collect::<Vec<_>>(), "engine {index}: all its own, once, in order");
        let from_other: Vec<&String> = texts.iter().filter(|t| t.starts_with(&format!("{other}:"))).collect();
        let mut positions = HashMap::new();
        for (at, text) in accepted[other].iter().enumerate() {
            positions.insert(text, at);
        }
        let places: Vec<usize> = from_other.iter().map(|t| positions[t]).collect();
        assert!(places.windows(2).all(|w| w[0] < w[1]), "engine {index}: the other's, once each, in order");
        let status = engine.status();
        println!(
            "engine {index}: published {n}, accepted {}, local only {}, unconfirmed {}, replayed {}; \
             of the other's {} accepted: received {}, missed {}",
            accepted[index].len(),
            status.local_only(),
            status.unconfirmed(),
            status.replayed(),
            accepted[other].len(),
            from_other.len(),
            status.missed(),
        );
        assert_eq!(
            from_other.len() as u64 + status.missed(),
            accepted[other].len() as u64,
            "engine {index}: each of the other's accepted publications arrived or was counted missed \
             (received {}, missed {}, accepted {}; local_only {}, unconfirmed {}, replayed {})",
            from_other.len(),
            status.missed(),
            accepted[other].len(),
            status.local_only(),
            status.unconfirmed(),
            status.replayed(),
        );
        assert!(status.outages() >= 1);
        assert!(status.local_only() > 0, "publications during the outage were counted local only");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_open_link_is_noticed_within_the_health_timeout() {
    let redis = RedisServer::plain();
    let proxy = tether_test_support::stall_proxy(redis.port());
    let (a, _log) = engine(fast(&format!("redis://127.0.0.1:{}", proxy.port())));
    wait_until("up", Duration::from_secs(10), || a.status().is_up()).await;
    // The proxy stops forwarding but keeps every socket open: TCP sees
    // nothing wrong.
    proxy.signal_usr1();
    let stalled = Instant::now();
    wait_until("down", Duration::from_secs(5), || !a.status().is_up()).await;
    // Health interval 100 ms, timeout 300 ms.
    assert!(stalled.elapsed() < Duration::from_millis(1500), "noticed after {:?}", stalled.elapsed());
    assert_eq!(a.status().outages(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn different_prefixes_on_one_redis_do_not_see_each_other() {
    let redis = RedisServer::plain();
    let (blue, blue_log) = engine(fast(&redis.url()).with_prefix("blue"));
    let (green, green_log) = engine(fast(&redis.url()).with_prefix("green"));
    let (blue2, blue2_log) = engine(fast(&redis.url()).with_prefix("blue"));
    wait_until("all up", Duration::from_secs(10), || [&blue, &green, &blue2].iter().all(|e| e.status().is_up())).await;
    assert!(publish(&blue, &blue_log, &Target::All, "for blue"));
    assert!(publish(&green, &green_log, &Target::All, "for green"));
    wait_until("delivered", Duration::from_secs(5), || texts(&blue2_log).len() == 1 && texts(&green_log).len() == 1)
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(texts(&blue_log), ["for blue"]);
    assert_eq!(texts(&blue2_log), ["for blue"]);
    assert_eq!(texts(&green_log), ["for green"]);
    // A prefix that could reach into another's channels is refused.
    let deliver: Deliver = Arc::new(|_, _, _| {});
    for bad in ["blue:x", "a*", "", "sp ace"] {
        let error = Redis::start(RedisConfig::new(redis.url()).with_prefix(bad), deliver.clone()).unwrap_err();
        assert!(error.to_string().contains("prefix"), "{bad:?}: {error}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_and_an_acl_user_authenticate_and_a_wrong_one_is_never_up() {
    let dir = std::env::temp_dir().join(format!("tether-redis-acl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let acl = dir.join("users.acl");
    let mut file = std::fs::File::create(&acl).unwrap();
    writeln!(file, "user default on >admin-secret ~* &* +@all").unwrap();
    // Only what the engine needs: its channels, publish/subscribe, ping.
    writeln!(file, "user fanout on >fan-secret resetchannels &tether:* +@pubsub +ping").unwrap();
    // With history: its keys too, and what the scripts call.
    writeln!(
        file,
        "user historian on >h-secret resetchannels &tether:* ~tether:* +@pubsub +ping +evalsha +eval +script|load \
         +xadd +xrange +hget +hset +hincrby +expire +del"
    )
    .unwrap();
    drop(file);
    let port = tether_test_support::free_port();
    let _redis = RedisServer::start(port, &["--aclfile", acl.to_str().unwrap()]);
    for url in
        [format!("redis://:admin-secret@127.0.0.1:{port}"), format!("redis://fanout:fan-secret@127.0.0.1:{port}")]
    {
        let (a, a_log) = engine(fast(&url));
        let (b, b_log) = engine(fast(&url));
        wait_until(&url, Duration::from_secs(10), || a.status().is_up() && b.status().is_up()).await;
        assert!(publish(&a, &a_log, &Target::Topic("t".into()), "hi"));
        wait_until("delivered", Duration::from_secs(5), || texts(&b_log) == ["hi"]).await;
    }
    let historian = format!("redis://historian:h-secret@127.0.0.1:{port}");
    let (a, a_log) = engine_with_history(&historian);
    let (b, b_log) = engine_with_history(&historian);
    wait_until("historians up", Duration::from_secs(10), || a.status().is_up() && b.status().is_up()).await;
    assert!(a.publish(&Target::Topic("t".into()), &Message::from("kept")));
    wait_until("delivered with its place", Duration::from_secs(5), || b_log.lock().unwrap().len() == 1).await;
    assert_eq!(b_log.lock().unwrap()[0].1.offset, 1);
    assert_eq!(a_log.lock().unwrap().len(), 1);
    let (wrong, wrong_log) = engine(fast(&format!("redis://fanout:wrong@127.0.0.1:{port}")));
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(!wrong.status().is_up());
    assert!(!publish(&wrong, &wrong_log, &Target::All, "local"));
    assert_eq!((wrong.status().local_only(), texts(&wrong_log)), (1, vec!["local".to_owned()]));
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_with_a_private_ca() {
    let cert = tether_test_support::TestCert::new();
    let port = tether_test_support::free_port();
    let tls_port = port.to_string();
    let _redis = RedisServer::start(
        port,
        &[
            "--port",
            "0",
            "--tls-port",
            &tls_port,
            "--tls-cert-file",
            cert.cert_path().to_str().unwrap(),
            "--tls-key-file",
            cert.key_path().to_str().unwrap(),
            "--tls-ca-cert-file",
            cert.ca_path().to_str().unwrap(),
            "--tls-auth-clients",
            "no",
        ],
    );
    let mut config = fast(&format!("rediss://127.0.0.1:{port}"));
    config.ca_pem = Some(std::fs::read(cert.ca_path()).unwrap());
    let (a, a_log) = engine(config.clone());
    let (b, b_log) = engine(config);
    wait_until("up over TLS", Duration::from_secs(10), || a.status().is_up() && b.status().is_up()).await;
    assert!(publish(&a, &a_log, &Target::All, "secret"));
    wait_until("delivered", Duration::from_secs(5), || texts(&b_log) == ["secret"]).await;
    // Without the CA, the server's certificate is not trusted: never up.
    let other = tether_test_support::TestCert::new();
    let mut untrusted = fast(&format!("rediss://127.0.0.1:{port}"));
    untrusted.ca_pem = Some(std::fs::read(other.ca_path()).unwrap());
    let (c, _) = engine(untrusted);
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(!c.status().is_up());
}

/// Every subscription is cut (`CLIENT KILL TYPE pubsub`) while one process
/// publishes: both processes read what they missed from the topic's
/// stream, so each delivers every offset once, in order, the same
/// publication at the same offset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_history_every_process_agrees_on_offsets_and_reads_back_what_it_missed() {
    let redis = RedisServer::plain();
    let (a, a_log) = engine_with_history(&redis.url());
    let (b, b_log) = engine_with_history(&redis.url());
    wait_until("both up", Duration::from_secs(10), || a.status().is_up() && b.status().is_up()).await;
    let room = Target::Topic("room".to_owned());
    for n in 0..50 {
        assert!(a.publish(&room, &Message::from(format!("a{n}"))));
        assert!(b.publish(&room, &Message::from(format!("b{n}"))));
    }
    wait_until("100 each", Duration::from_secs(10), || {
        a_log.lock().unwrap().len() == 100 && b_log.lock().unwrap().len() == 100
    })
    .await;
    let killed = Command::new("redis-cli")
        .args(["-p", &redis.port().to_string(), "CLIENT", "KILL", "TYPE", "pubsub"])
        .output()
        .expect("redis-cli (installed with redis-server)");
    assert!(killed.status.success(), "{killed:?}");
    // Published while neither subscription is back (the publishing
    // connections are untouched).
    for n in 50..100 {
        assert!(a.publish(&room, &Message::from(format!("a{n}"))));
    }
    wait_until("150 each", Duration::from_secs(10), || {
        a_log.lock().unwrap().len() >= 150 && b_log.lock().unwrap().len() >= 150
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let a_log = a_log.lock().unwrap().clone();
    let b_log = b_log.lock().unwrap().clone();
    assert_eq!(a_log, b_log, "the same publications at the same places");
    let offsets: Vec<u64> = a_log.iter().map(|(_, position)| position.offset).collect();
    assert_eq!(offsets, (1..=150).collect::<Vec<u64>>(), "every offset once, in order");
    assert!(a_log.iter().all(|(_, position)| position.epoch == a_log[0].1.epoch));
    let from_a: Vec<&str> = a_log.iter().map(|(text, _)| text.as_str()).filter(|text| text.starts_with('a')).collect();
    assert_eq!(from_a, (0..100).map(|n| format!("a{n}")).collect::<Vec<_>>());
    let recovered = a.status().recovered() + b.status().recovered();
    println!("recovered from the stream: a {}, b {}", a.status().recovered(), b.status().recovered());
    assert!(recovered > 0, "the cut lost some publications in transit, read back from the stream");
}

/// Redis behind Sentinel: the master is killed; the sentinel promotes its
/// replica; the engine asks the sentinel again when it reconnects and
/// fan-out resumes on the new master.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_sentinel_a_failover_is_followed() {
    let master = RedisServer::plain();
    let replica_port = tether_test_support::free_port();
    let master_port = master.port().to_string();
    let replica = RedisServer::start(replica_port, &["--replicaof", "127.0.0.1", &master_port]);
    let cli = |port: u16, args: &[&str]| {
        let output = Command::new("redis-cli").arg("-p").arg(port.to_string()).args(args).output().unwrap();
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    wait_until("replica in sync", Duration::from_secs(10), || {
        cli(replica_port, &["INFO", "replication"]).contains("master_link_status:up")
    })
    .await;
    let dir = std::env::temp_dir().join(format!("tether-sentinel-{}-{replica_port}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("sentinel.conf");
    let sentinel_port = tether_test_support::free_port();
    std::fs::write(
        &conf,
        format!(
            "port {sentinel_port}\nbind 127.0.0.1\nsentinel monitor mymaster 127.0.0.1 {} 1\n\
             sentinel down-after-milliseconds mymaster 500\nsentinel failover-timeout mymaster 3000\n",
            master.port()
        ),
    )
    .unwrap();
    let sentinel = RedisServer::start(sentinel_port, &[conf.to_str().unwrap(), "--sentinel"]);
    let _sentinel = sentinel;
    wait_until("the sentinel knows the replica", Duration::from_secs(15), || {
        cli(sentinel_port, &["SENTINEL", "replicas", "mymaster"]).contains(&replica_port.to_string())
    })
    .await;

    let mut config = fast("redis://127.0.0.1:1");
    config.sentinel =
        Some(SentinelConfig { nodes: vec![format!("127.0.0.1:{sentinel_port}")], master: "mymaster".to_owned() });
    let (a, a_log) = engine(config);
    wait_until("up through the sentinel", Duration::from_secs(10), || a.status().is_up()).await;
    assert!(publish(&a, &a_log, &Target::All, "before"));
    wait_until("delivered", Duration::from_secs(5), || texts(&a_log) == ["before"]).await;

    drop(master);
    wait_until("down", Duration::from_secs(5), || !a.status().is_up()).await;
    wait_until("failed over", Duration::from_secs(20), || {
        cli(sentinel_port, &["SENTINEL", "get-master-addr-by-name", "mymaster"]).contains(&replica_port.to_string())
    })
    .await;
    wait_until("up on the new master", Duration::from_secs(15), || a.status().is_up()).await;
    assert!(publish(&a, &a_log, &Target::All, "after"));
    wait_until("delivered after the failover", Duration::from_secs(5), || {
        texts(&a_log).last().map(String::as_str) == Some("after")
    })
    .await;
    assert!(cli(replica_port, &["INFO", "replication"]).contains("role:master"));
    drop(replica);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A three-node Redis Cluster on loopback: topics' histories land on
/// different nodes; publications (classic pub/sub, which a cluster hands
/// to every node) reach both processes; each topic's offsets are
/// contiguous and the same everywhere, after every subscription was cut
/// too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_cluster_every_topic_keeps_its_own_offsets_everywhere() {
    let cluster = RedisCluster::start(3);
    let ports = cluster.ports();
    let url = cluster.url();
    let on_cluster = || {
        let mut config = fast(&url);
        config.cluster = true;
        config
    };
    let (a, a_log) = engine_with_history_on(on_cluster());
    let (b, b_log) = engine_with_history_on(on_cluster());
    wait_until("both up", Duration::from_secs(10), || a.status().is_up() && b.status().is_up()).await;
    let topics: Vec<String> = (0..8).map(|n| format!("t{n}")).collect();
    let publish_round = |round: usize| {
        for topic in &topics {
            let target = Target::Topic(topic.clone());
            assert!(a.publish(&target, &Message::from(format!("{topic}:a{round}"))));
            assert!(b.publish(&target, &Message::from(format!("{topic}:b{round}"))));
        }
    };
    for round in 0..10 {
        publish_round(round);
    }
    let total = topics.len() * 20;
    wait_until("all delivered", Duration::from_secs(10), || {
        a_log.lock().unwrap().len() == total && b_log.lock().unwrap().len() == total
    })
    .await;
    // Every subscription cut, on every node, while publishing goes on.
    for port in &ports {
        Command::new("redis-cli").args(["-p", &port.to_string(), "CLIENT", "KILL", "TYPE", "pubsub"]).output().unwrap();
    }
    for round in 10..15 {
        publish_round(round);
    }
    let total = topics.len() * 30;
    wait_until("all delivered after the cut", Duration::from_secs(15), || {
        a_log.lock().unwrap().len() == total && b_log.lock().unwrap().len() == total
    })
    .await;
    let (a_topics, b_topics) = (by_topic(&a_log), by_topic(&b_log));
    assert_eq!(a_topics, b_topics, "the same publications at the same places on both");
    for (topic, placed) in &a_topics {
        let offsets: Vec<u64> = placed.iter().map(|(offset, _)| *offset).collect();
        assert_eq!(offsets, (1..=30).collect::<Vec<u64>>(), "{topic}: every offset once, in order");
    }
    println!("recovered from the streams after the cut: a {}, b {}", a.status().recovered(), b.status().recovered());
}

/// Publications of each topic, by topic: offsets and texts, in the order
/// they were delivered.
fn by_topic(log: &Placed) -> HashMap<String, Vec<(u64, String)>> {
    let mut topics: HashMap<String, Vec<(u64, String)>> = HashMap::new();
    for (text, position) in log.lock().unwrap().iter() {
        let topic = text.split(':').next().unwrap().to_owned();
        topics.entry(topic).or_default().push((position.offset, text.clone()));
    }
    topics
}

/// Follows `topic` and waits until the subscription is in place (the
/// engine answers a history read only then).
async fn follow(engine: &Redis, topic: &str) {
    engine.follow(topic, true);
    let (answered, answer) = tokio::sync::oneshot::channel();
    engine.read_history(
        topic,
        None,
        Box::new(move |history| {
            let _ = answered.send(history.is_some());
        }),
    );
    assert_eq!(answer.await, Ok(true), "{topic}: subscribed and read");
}

/// The ids of the clients with sharded subscriptions on a node.
fn sharded_subscribers(cluster: &RedisCluster, port: u16) -> Vec<String> {
    let list = cluster.cli(port, &["CLIENT", "LIST"]);
    list.lines()
        .filter(|line| line.split(' ').any(|field| field.strip_prefix("ssub=").is_some_and(|n| n != "0")))
        .filter_map(|line| line.split(' ').find_map(|field| field.strip_prefix("id=")).map(str::to_owned))
        .collect()
}

/// Sharded pub/sub on a three-node cluster: each process hears only the
/// topics it follows, each topic's publications stay in its shard (the
/// nodes hold one shard channel per followed topic, and no classic
/// channel carries them), offsets are contiguous and the same on both
/// processes, and what a cut of every sharded subscription made them miss
/// is read back from the streams. A topic let go is unsubscribed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_sharded_pub_sub_a_process_hears_only_what_it_follows_and_loses_nothing() {
    let cluster = RedisCluster::start(3);
    let sharded = || {
        let mut config = fast(&cluster.url());
        config.cluster = true;
        config.sharded = true;
        config
    };
    let (a, a_log) = engine_with_history_on(sharded());
    let (b, b_log) = engine_with_history_on(sharded());
    assert!(!a.hears_every_topic());
    wait_until("both up", Duration::from_secs(10), || a.status().is_up() && b.status().is_up()).await;
    let topics: Vec<String> = (0..6).map(|n| format!("t{n}")).collect();
    for topic in &topics[0..4] {
        follow(&a, topic).await;
    }
    for topic in &topics[2..6] {
        follow(&b, topic).await;
    }
    let channels: usize = cluster
        .cli_all(&["PUBSUB", "SHARDCHANNELS", "tether:t:*"])
        .iter()
        .map(|listed| listed.lines().filter(|line| !line.is_empty()).count())
        .sum();
    assert_eq!(channels, 6, "one shard channel per followed topic, on its slot's node");
    assert!(cluster.cli_all(&["PUBSUB", "CHANNELS", "tether:t:*"]).iter().all(|listed| listed.trim().is_empty()));

    let publish_round = |round: usize| {
        for topic in &topics {
            let target = Target::Topic(topic.clone());
            assert!(a.publish(&target, &Message::from(format!("{topic}:a{round}"))));
            assert!(b.publish(&target, &Message::from(format!("{topic}:b{round}"))));
        }
    };
    for round in 0..10 {
        publish_round(round);
    }
    wait_until("all delivered", Duration::from_secs(10), || {
        a_log.lock().unwrap().len() == 4 * 20 && b_log.lock().unwrap().len() == 4 * 20
    })
    .await;
    // Every sharded subscription cut, on every node, while publishing goes on.
    let mut cut = 0;
    for port in cluster.ports() {
        for id in sharded_subscribers(&cluster, port) {
            cut += cluster.cli(port, &["CLIENT", "KILL", "ID", &id]).trim().parse::<usize>().unwrap_or(0);
        }
    }
    assert!(cut >= 2, "both processes' sharded subscriptions cut ({cut} connections)");
    for round in 10..15 {
        publish_round(round);
    }
    wait_until("all delivered after the cut", Duration::from_secs(15), || {
        a_log.lock().unwrap().len() == 4 * 30 && b_log.lock().unwrap().len() == 4 * 30
    })
    .await;
    let (a_topics, b_topics) = (by_topic(&a_log), by_topic(&b_log));
    let heard = |topics: &HashMap<String, Vec<(u64, String)>>| {
        let mut heard: Vec<String> = topics.keys().cloned().collect();
        heard.sort();
        heard
    };
    assert_eq!(heard(&a_topics), topics[0..4], "a hears only what it follows");
    assert_eq!(heard(&b_topics), topics[2..6], "b hears only what it follows");
    for topic in &topics[2..4] {
        assert_eq!(a_topics[topic], b_topics[topic], "{topic}: the same publications at the same places on both");
    }
    for (topic, placed) in a_topics.iter().chain(&b_topics) {
        let offsets: Vec<u64> = placed.iter().map(|(offset, _)| *offset).collect();
        assert_eq!(offsets, (1..=30).collect::<Vec<u64>>(), "{topic}: every offset once, in order");
    }
    assert_eq!((a.status().missed(), b.status().missed()), (0, 0), "nothing lost for good");
    println!("recovered from the streams after the cut: a {}, b {}", a.status().recovered(), b.status().recovered());

    // Let go of t0: its channel is unsubscribed, and a hears it no more.
    a.follow("t0", false);
    let shard_subscribers = |channel: &str| -> u64 {
        cluster
            .cli_all(&["PUBSUB", "SHARDNUMSUB", channel])
            .iter()
            .filter_map(|listed| listed.lines().nth(1).and_then(|count| count.trim().parse::<u64>().ok()))
            .sum()
    };
    wait_until("t0 unsubscribed", Duration::from_secs(5), || shard_subscribers("tether:t:{t0}") == 0).await;
    assert_eq!(shard_subscribers("tether:t:{t1}"), 1);
    assert!(b.publish(&Target::Topic("t0".into()), &Message::from("t0:late")));
    assert!(b.publish(&Target::Topic("t1".into()), &Message::from("t1:late")));
    wait_until("t1 still heard", Duration::from_secs(5), || a_log.lock().unwrap().len() == 4 * 30 + 1).await;
    assert_eq!(a_log.lock().unwrap().last().unwrap().0, "t1:late");
}

/// A cluster that speaks TLS only (clients and the cluster bus), with a
/// private CA: every link comes up (the classic subscription, the sharded
/// one, publishing) and a sharded topic gets through; a process that does
/// not trust the CA is never up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_over_tls_with_a_private_ca() {
    let cert = tether_test_support::TestCert::new();
    let cluster = RedisCluster::start_tls(3, &cert);
    let over_tls = |ca: &std::path::Path| {
        let mut config = fast(&cluster.url());
        config.cluster = true;
        config.sharded = true;
        config.ca_pem = Some(std::fs::read(ca).unwrap());
        config
    };
    let (a, a_log) = engine_with_history_on(over_tls(cert.ca_path()));
    let (b, b_log) = engine_with_history_on(over_tls(cert.ca_path()));
    wait_until("both up over TLS", Duration::from_secs(10), || a.status().is_up() && b.status().is_up()).await;
    follow(&b, "room").await;
    assert!(a.publish(&Target::Topic("room".into()), &Message::from("room:secret")));
    wait_until("delivered", Duration::from_secs(5), || b_log.lock().unwrap().len() == 1).await;
    assert_eq!(b_log.lock().unwrap()[0].0, "room:secret");
    assert!(a_log.lock().unwrap().is_empty(), "a does not follow room");

    let other = tether_test_support::TestCert::new();
    let (untrusting, _) = engine_with_history_on(over_tls(other.ca_path()));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!untrusting.status().is_up(), "a certificate from another CA is refused");
}
