//! Connecting through real proxy servers started on loopback
//! (`tests/peers/proxy.py`): tinyproxy (HTTP CONNECT with Basic auth),
//! pproxy (SOCKS5 with username/password, and HTTP), dante (SOCKS5). Host
//! names are resolved by the proxy (`localhost` is sent as a name).

use std::net::SocketAddr;
use std::time::Duration;

use tether::proxy::{Proxy, ProxyChoice};
use tether::{ClientConfig, CloseCode, Message, Server, ServerConfig, TrustRoots, WebSocket};
use tether_test_support::{self as support, Peer, TestCert};

const USER: &str = "alice";
const PASSWORD: &str = "s3cret";

async fn echo(mut ws: WebSocket) {
    while let Ok(Some(message)) = ws.recv().await {
        if ws.send(message).await.is_err() {
            break;
        }
    }
}

async fn echo_server(config: ServerConfig) -> SocketAddr {
    let server = Server::bind("127.0.0.1:0", config).await.unwrap();
    let addr = server.local_addr().unwrap();
    tokio::spawn(server.serve(echo));
    addr
}

fn proxy(kind: &str, engine: &str, auth: bool) -> Peer {
    let mut command = support::python_peer("proxy.py");
    command.args(["--kind", kind, "--engine", engine]);
    if auth {
        command.args(["--user", USER, "--password", PASSWORD]);
    }
    Peer::server(command, Duration::from_secs(20)).unwrap()
}

fn via(url: String) -> ClientConfig {
    ClientConfig::default().proxy(Proxy::parse(&url).unwrap())
}

async fn round_trip(url: &str, config: &ClientConfig) {
    let mut ws = tether::connect_with(url, config).await.unwrap_or_else(|error| panic!("{url}: {error}"));
    for message in [Message::from("through the proxy"), Message::from(vec![7u8; 100_000])] {
        ws.send(message.clone()).await.unwrap();
        assert_eq!(ws.recv().await.unwrap(), Some(message));
    }
    ws.close(CloseCode::NORMAL, "").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_connect_through_tinyproxy_with_basic_auth_for_ws_and_wss() {
    let proxy = proxy("http", "tinyproxy", true);
    let proxy_url = format!("http://{USER}:{PASSWORD}@127.0.0.1:{}", proxy.port());

    let plain = echo_server(ServerConfig::default()).await;
    round_trip(&format!("ws://localhost:{}/", plain.port()), &via(proxy_url.clone())).await;

    let cert = TestCert::new();
    let mut tls = ServerConfig::default();
    tls.tls = Some(tether::tls::server_config_from_pem(cert.cert_path(), cert.key_path()).unwrap());
    let secure = echo_server(tls).await;
    let config = via(proxy_url).trust(TrustRoots::CaFile(cert.ca_path().to_owned()));
    round_trip(&format!("wss://localhost:{}/", secure.port()), &config).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_refusing_our_credentials_is_a_clear_final_error() {
    let server = echo_server(ServerConfig::default()).await;
    let url = format!("ws://127.0.0.1:{}/", server.port());
    for (kind, engine) in [("http", "tinyproxy"), ("http", "pproxy"), ("socks5", "pproxy")] {
        let proxy = proxy(kind, engine, true);
        for credentials in ["", "alice:wrong@"] {
            let config = via(format!("{}://{credentials}127.0.0.1:{}", kind, proxy.port()));
            let error = tether::connect_with(&url, &config).await.expect_err("refused");
            println!("{engine} ({kind}), credentials {credentials:?}: {error}");
            assert!(error.is_proxy(), "{engine}: {error}");
            assert!(!error.is_retryable(), "{engine}: wrong credentials are not worth retrying");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socks5_with_password_through_pproxy_resolves_the_name_at_the_proxy() {
    let proxy = proxy("socks5", "pproxy", true);
    let server = echo_server(ServerConfig::default()).await;
    let config = via(format!("socks5h://{USER}:{PASSWORD}@127.0.0.1:{}", proxy.port()));
    round_trip(&format!("ws://localhost:{}/", server.port()), &config).await;
    assert!(proxy.stderr().contains("localhost"), "the proxy saw the name: {}", proxy.stderr());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socks5_without_auth_through_dante_and_its_refusals() {
    let proxy = proxy("socks5", "dante", false);
    let server = echo_server(ServerConfig::default()).await;
    let config = via(format!("socks5://127.0.0.1:{}", proxy.port()));
    round_trip(&format!("ws://localhost:{}/", server.port()), &config).await;

    // Nothing listens there: dante answers "connection refused", which
    // is worth retrying (the server may be restarting).
    let closed = support::free_port();
    let error = tether::connect_with(&format!("ws://127.0.0.1:{closed}/"), &config).await.unwrap_err();
    assert!(error.is_proxy() && error.to_string().contains("refused"), "{error}");
    assert!(error.is_retryable());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_ignores_the_environment_and_the_app_goes_through_a_proxy_too() {
    let proxy = proxy("http", "pproxy", true);
    let server = echo_server(ServerConfig::default()).await;
    let mut config = ClientConfig::default();
    config.proxy = ProxyChoice::Direct;
    round_trip(&format!("ws://127.0.0.1:{}/", server.port()), &config).await;

    let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = received.clone();
    let stopped = tether::App::new(format!("ws://localhost:{}/", server.port()))
        .config(via(format!("http://{USER}:{PASSWORD}@127.0.0.1:{}", proxy.port())))
        .on_open(|app| app.send("app via proxy").unwrap())
        .on_message(move |app, message| {
            sink.lock().unwrap().push(message);
            app.close();
        })
        .run()
        .await;
    assert!(matches!(stopped.reason, tether::app::StopReason::Closed), "{stopped:?}");
    assert_eq!(*received.lock().unwrap(), [Message::from("app via proxy")]);
}
