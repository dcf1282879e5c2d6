//! `tether connect URL`: an interactive client in the manner of
//! `python -m websockets`, `wsdump` and `websocat`.
//!
//! At a terminal, lines are typed at a prompt with line editing and
//! history, and messages that arrive are printed above it without breaking
//! the line being typed. With a pipe or a file on standard input, each line
//! is sent as it is read, and the end of input closes the connection.
//! Output is for people (`< message`), for pipes (`--raw`), or for programs
//! (`--jsonl`: one JSON object per event). The exit status says how the
//! connection ended: 0 after a normal close (1000, 1001, or no code).

use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _};
use base64::Engine as _;
use clap::Args;
use tether::reconnect::{classify_error, Verdict};
use tether::{ClientConfig, CloseCode, CloseFrame, Config, Event, Message, TrustRoots, WebSocket};
use tokio::sync::mpsc;

#[derive(Args)]
pub struct ConnectArgs {
    /// ws:// or wss:// URL.
    url: String,
    /// PEM file of certificate authorities to trust for wss:// (default: Mozilla's roots).
    #[arg(long)]
    cafile: Option<PathBuf>,
    /// Accept any server certificate for wss:// (testing only: the connection is encrypted but
    /// not authenticated).
    #[arg(long, short = 'k', conflicts_with = "cafile")]
    insecure: bool,
    /// Extra handshake header, as "Name: value" (repeatable).
    #[arg(long = "header", short = 'H')]
    headers: Vec<String>,
    /// The Origin header to send.
    #[arg(long)]
    origin: Option<String>,
    /// Subprotocol to offer (repeatable).
    #[arg(long = "protocol")]
    protocols: Vec<String>,
    /// Largest message accepted, in bytes.
    #[arg(long, default_value_t = 16 << 20)]
    max_message_size: usize,
    /// Send a keepalive ping every this many seconds (0: none).
    #[arg(long, value_name = "SECONDS", default_value_t = 20.0)]
    ping_interval: f64,
    /// Close the connection if a ping has no answer within this many seconds (0: wait for ever).
    #[arg(long, value_name = "SECONDS", default_value_t = 20.0)]
    ping_timeout: f64,
    /// Send each line as a binary message (its UTF-8 bytes) instead of text.
    #[arg(long)]
    binary: bool,
    /// Lines are base64, sent as binary messages; binary messages received are shown in base64.
    #[arg(long, conflicts_with = "binary")]
    base64: bool,
    /// Print messages as they are, one per line, without the `< ` prefix (binary messages as raw
    /// bytes): for pipes.
    #[arg(long, conflicts_with = "jsonl")]
    raw: bool,
    /// Print one JSON object per line for each event (open, text, binary, ping, pong, close,
    /// error, reconnect), with its time, type and size: for programs.
    #[arg(long)]
    jsonl: bool,
    /// When the connection is lost, connect again (with backoff) until the input ends or the
    /// server refuses for good.
    #[arg(long)]
    reconnect: bool,
    /// Show how long connecting took (DNS, TCP, TLS, handshake), and when each message came.
    #[arg(long)]
    timings: bool,
}

/// How events are shown.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Style {
    /// `< text`, for people.
    Human,
    /// Messages as they are.
    Raw,
    /// One JSON object per event.
    Jsonl,
}

/// Where output goes: stdout, or above the prompt of the line editor.
struct Out {
    style: Style,
    base64: bool,
    timings: bool,
    /// Since the connection opened (for `--timings`).
    opened: Instant,
    printer: Option<Printer>,
}

/// Prints above the line editor's prompt.
type Printer = Box<dyn rustyline::ExternalPrinter + Send>;

impl Out {
    fn line(&mut self, text: &str) -> anyhow::Result<()> {
        match &mut self.printer {
            Some(printer) => printer.print(format!("{text}\n"))?,
            None => {
                let mut out = std::io::stdout().lock();
                writeln!(out, "{text}")?;
                out.flush()?;
            }
        }
        Ok(())
    }

    /// A line about the connection, for people: on stderr (or above the
    /// prompt), never in `--raw` output; an event in `--jsonl`.
    fn note(&mut self, kind: &str, text: &str, fields: serde_json::Value) -> anyhow::Result<()> {
        match self.style {
            Style::Jsonl => self.event(kind, fields),
            _ if self.printer.is_some() => self.line(text),
            _ => {
                let _ = writeln!(std::io::stderr(), "{text}");
                Ok(())
            }
        }
    }

    fn event(&mut self, kind: &str, fields: serde_json::Value) -> anyhow::Result<()> {
        let time = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |since| since.as_secs_f64());
        let mut object = serde_json::json!({ "time": time, "type": kind });
        if let (Some(object), serde_json::Value::Object(fields)) = (object.as_object_mut(), fields) {
            object.extend(fields);
        }
        self.line(&object.to_string())
    }

    fn message(&mut self, message: &Message) -> anyhow::Result<()> {
        let at = if self.timings { format!("[+{:.3} s] ", self.opened.elapsed().as_secs_f64()) } else { String::new() };
        match (self.style, message) {
            (Style::Jsonl, Message::Text(text)) => {
                self.event("text", serde_json::json!({ "size": text.len(), "data": text.as_str() }))
            }
            (Style::Jsonl, Message::Binary(bytes)) => self.event(
                "binary",
                serde_json::json!({ "size": bytes.len(), "base64": base64::engine::general_purpose::STANDARD.encode(bytes) }),
            ),
            (Style::Raw, Message::Text(text)) => self.line(&format!("{at}{text}")),
            (Style::Raw, Message::Binary(bytes)) if self.base64 => {
                self.line(&format!("{at}{}", base64::engine::general_purpose::STANDARD.encode(bytes)))
            }
            (Style::Raw, Message::Binary(bytes)) => {
                let mut out = std::io::stdout().lock();
                out.write_all(at.as_bytes())?;
                out.write_all(bytes)?;
                out.write_all(b"\n")?;
                out.flush()?;
                Ok(())
            }
            (Style::Human, Message::Text(text)) => self.line(&format!("{at}< {text}")),
            (Style::Human, Message::Binary(bytes)) if self.base64 => {
                self.line(&format!("{at}< {}", base64::engine::general_purpose::STANDARD.encode(bytes)))
            }
            (Style::Human, Message::Binary(bytes)) => {
                self.line(&format!("{at}< (binary) {} bytes: {}", bytes.len(), hex_preview(bytes)))
            }
        }
    }
}

/// What standard input gives.
enum Input {
    Line(String),
    /// The end of input (Ctrl-D, or the end of the pipe or file).
    End,
    /// Ctrl-C at the prompt.
    Interrupted,
}

/// Reads lines: with a line editor at a terminal, plainly otherwise; the
/// line editor's printer, to print above its prompt.
fn read_input(interactive: bool) -> anyhow::Result<(mpsc::Receiver<Input>, Option<Printer>)> {
    let (lines, input) = mpsc::channel(64);
    if !interactive {
        tokio::spawn(async move {
            use tokio::io::AsyncBufReadExt as _;
            let mut reader = tokio::io::BufReader::new(tokio::io::stdin()).lines();
            loop {
                let line = match reader.next_line().await {
                    Ok(Some(line)) => Input::Line(line),
                    Ok(None) | Err(_) => Input::End,
                };
                let end = matches!(line, Input::End);
                if lines.send(line).await.is_err() || end {
                    return;
                }
            }
        });
        return Ok((input, None));
    }
    let mut editor = rustyline::DefaultEditor::new().context("cannot start the line editor")?;
    let printer = editor.create_external_printer().context("cannot print above the prompt")?;
    // The editor blocks: it has a thread of its own, which the runtime
    // does not wait for at exit.
    std::thread::spawn(move || loop {
        let line = match editor.readline("> ") {
            Ok(line) => {
                if !line.is_empty() {
                    let _ = editor.add_history_entry(line.as_str());
                }
                Input::Line(line)
            }
            Err(rustyline::error::ReadlineError::Interrupted) => Input::Interrupted,
            Err(_) => Input::End,
        };
        let more = matches!(line, Input::Line(_));
        if lines.blocking_send(line).is_err() || !more {
            return;
        }
    });
    Ok((input, Some(Box::new(printer))))
}

fn client_config(args: &ConnectArgs) -> anyhow::Result<ClientConfig> {
    let seconds = |value: f64, flag: &str| -> anyhow::Result<Option<Duration>> {
        if !value.is_finite() || value < 0.0 {
            bail!("{flag} must be a number of seconds, 0 or more");
        }
        Ok((value > 0.0).then(|| Duration::from_secs_f64(value)))
    };
    let mut config = ClientConfig::default();
    config.protocol = Config::default()
        .with_max_message_size(args.max_message_size)
        .with_keepalive(seconds(args.ping_interval, "--ping-interval")?, seconds(args.ping_timeout, "--ping-timeout")?);
    config.protocols.clone_from(&args.protocols);
    if args.insecure {
        config.trust = TrustRoots::InsecureAcceptAny;
    }
    if let Some(cafile) = &args.cafile {
        config.trust = TrustRoots::CaFile(cafile.clone());
    }
    for header in &args.headers {
        let Some((name, value)) = header.split_once(':') else {
            bail!("--header must look like 'Name: value', got {header:?}");
        };
        config.headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }
    if let Some(origin) = &args.origin {
        config.headers.push(("Origin".to_owned(), origin.clone()));
    }
    Ok(config)
}

/// How one connection ended.
enum Ended {
    /// The input ended (or Ctrl-C) and the close handshake is done.
    InputDone(Option<CloseFrame>),
    /// The server closed, or the connection failed.
    Closed(Option<CloseFrame>),
    Failed(tether::Error),
}

pub async fn connect(args: ConnectArgs, verbose: bool) -> anyhow::Result<()> {
    if verbose {
        // -v shows the handshake and every frame (wsdump's -v).
        tether::trace::enable(true);
    }
    let config = client_config(&args)?;
    let interactive = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    let style = if args.jsonl {
        Style::Jsonl
    } else if args.raw {
        Style::Raw
    } else {
        Style::Human
    };
    let (mut input, printer) = read_input(interactive)?;
    let mut out = Out { style, base64: args.base64, timings: args.timings, opened: Instant::now(), printer };
    let mut backoff = tether::proto::backoff::Backoff::new(tether::proto::backoff::BackoffPolicy::new(
        Duration::from_millis(500),
        Duration::from_secs(30),
    ));
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let socket = match tether::connect_with(&args.url, &config).await {
            Ok(socket) => socket,
            Err(error) if args.reconnect && attempt > 1 && classify_error(&error) == Verdict::Retry => {
                let delay = backoff.next_delay().unwrap_or(Duration::from_secs(30));
                out.note(
                    "reconnect",
                    &format!("Cannot connect ({error}); trying again in {:.1} s.", delay.as_secs_f64()),
                    serde_json::json!({ "error": error.to_string(), "delay": delay.as_secs_f64() }),
                )?;
                tokio::time::sleep(delay).await;
                continue;
            }
            Err(error) => return Err(error).with_context(|| format!("cannot connect to {}", args.url)),
        };
        backoff.reset();
        out.opened = Instant::now();
        opened(&mut out, &args.url, &socket)?;
        let ended = session(socket, &args, &mut input, &mut out).await?;
        let (frame, failure) = match ended {
            Ended::InputDone(frame) => return finish(&mut out, frame.as_ref()),
            Ended::Closed(frame) => (frame, None),
            Ended::Failed(error) => (None, Some(error)),
        };
        let retry = match &failure {
            Some(error) => classify_error(error) == Verdict::Retry,
            None => tether::reconnect::classify_close(frame.as_ref(), false) == Verdict::Retry,
        };
        if !(args.reconnect && retry) {
            return match failure {
                Some(error) => {
                    out.note(
                        "error",
                        &format!("Connection failed: {error}."),
                        serde_json::json!({ "error": error.to_string() }),
                    )?;
                    Err(anyhow::Error::new(error).context("connection failed"))
                }
                None => finish(&mut out, frame.as_ref()),
            };
        }
        let why = failure
            .map_or_else(|| frame.map_or_else(|| "closed".to_owned(), |f| format!("closed: {f}")), |e| e.to_string());
        let delay = backoff.next_delay().unwrap_or(Duration::from_secs(30));
        out.note(
            "reconnect",
            &format!("Connection lost ({why}); reconnecting in {:.1} s.", delay.as_secs_f64()),
            serde_json::json!({ "reason": why, "delay": delay.as_secs_f64() }),
        )?;
        tokio::time::sleep(delay).await;
    }
}

fn opened(out: &mut Out, url: &str, socket: &WebSocket) -> anyhow::Result<()> {
    let mut text = format!("Connected to {url}");
    if let Some(protocol) = socket.protocol() {
        text.push_str(&format!(" (subprotocol {protocol})"));
    }
    let timings = socket.open_timings().copied();
    if let (true, Some(timings)) = (out.timings, timings) {
        let ms = |duration: Duration| format!("{:.1} ms", duration.as_secs_f64() * 1e3);
        let mut steps = Vec::new();
        if let Some(resolve) = timings.resolve {
            steps.push(format!("DNS {}", ms(resolve)));
        }
        steps.push(format!("TCP {}", ms(timings.connect)));
        if let Some(tls) = timings.tls {
            steps.push(format!("TLS {}", ms(tls)));
        }
        steps.push(format!("handshake {}", ms(timings.handshake)));
        text.push_str(&format!(" in {} ({})", ms(timings.total()), steps.join(", ")));
    }
    text.push('.');
    let ms = |duration: Option<Duration>| duration.map(|duration| duration.as_secs_f64() * 1e3);
    out.note(
        "open",
        &text,
        serde_json::json!({
            "url": url,
            "protocol": socket.protocol(),
            "dns_ms": timings.and_then(|t| ms(t.resolve)),
            "tcp_ms": timings.map(|t| t.connect.as_secs_f64() * 1e3),
            "tls_ms": timings.and_then(|t| ms(t.tls)),
            "handshake_ms": timings.map(|t| t.handshake.as_secs_f64() * 1e3),
        }),
    )
}

/// One connection: lines out, events in, until it ends.
async fn session(
    mut socket: WebSocket,
    args: &ConnectArgs,
    input: &mut mpsc::Receiver<Input>,
    out: &mut Out,
) -> anyhow::Result<Ended> {
    let mut closing = false;
    let mut close_deadline = None;
    loop {
        tokio::select! {
            line = input.recv(), if !closing => match line.unwrap_or(Input::End) {
                Input::Line(line) => {
                    let message = if args.base64 {
                        match base64::engine::general_purpose::STANDARD.decode(line.trim()) {
                            Ok(bytes) => Message::from(bytes),
                            Err(error) => {
                                out.note("error", &format!("Not base64 ({error}); not sent."), serde_json::json!({ "error": error.to_string() }))?;
                                continue;
                            }
                        }
                    } else if args.binary {
                        Message::from(line.into_bytes())
                    } else {
                        Message::from(line)
                    };
                    if let Err(error) = socket.send(message).await {
                        return Ok(Ended::Failed(error));
                    }
                }
                Input::End | Input::Interrupted => {
                    // Close, but keep printing what is still in flight.
                    closing = true;
                    if let Err(error) = socket.send_close(CloseCode::NORMAL, "").await {
                        return Ok(Ended::Failed(error));
                    }
                    close_deadline = Some(tokio::time::Instant::now() + Duration::from_secs(10));
                }
            },
            event = socket.recv_event() => match event {
                Ok(Some(Event::Message(message))) => out.message(&message)?,
                Ok(Some(Event::Ping(payload))) if out.style == Style::Jsonl => {
                    out.event("ping", serde_json::json!({ "size": payload.len() }))?;
                }
                Ok(Some(Event::Pong(payload))) if out.style == Style::Jsonl => {
                    out.event("pong", serde_json::json!({ "size": payload.len() }))?;
                }
                Ok(Some(_)) => {}
                Ok(None) => {
                    let frame = socket.close_frame().cloned();
                    return Ok(if closing { Ended::InputDone(frame) } else { Ended::Closed(frame) });
                }
                Err(error) => return Ok(Ended::Failed(error)),
            },
            () = sleep_until(close_deadline) => bail!("the server did not answer the close within 10 s"),
        }
    }
}

/// The connection closed: 0 for a normal close (1000, 1001, or no code),
/// an error otherwise, as websocat and wsdump do.
fn finish(out: &mut Out, frame: Option<&CloseFrame>) -> anyhow::Result<()> {
    let fields = serde_json::json!({
        "code": frame.map(|frame| frame.code.0),
        "reason": frame.map(|frame| frame.reason.to_string()),
    });
    match frame {
        Some(frame) if ![CloseCode::NORMAL, CloseCode::GOING_AWAY].contains(&frame.code) => {
            out.note("close", &format!("Connection closed: {frame}."), fields)?;
            bail!("connection closed: {frame}")
        }
        Some(frame) => out.note("close", &format!("Connection closed: {frame}."), fields),
        None => out.note("close", "Connection closed.", fields),
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

fn hex_preview(bytes: &[u8]) -> String {
    let mut preview: String = bytes.iter().take(32).map(|b| format!("{b:02x}")).collect();
    if bytes.len() > 32 {
        preview.push('…');
    }
    preview
}
