//! A keep-alive client over TLS is never surprised by a rejection: every early refusal (401,
//! 403, 405, 413, 414, 431, a 400 on a bad body, on both API dialects) either leaves the
//! connection usable for the next request or says `Connection: close` — and then the server
//! really closes it, after the answer. One connection, byte for byte, so no HTTP client's
//! retry of a dead pooled connection can hide a silent close.
//!
//! Invariants checked: for each bad request followed by a good one, the good one succeeds on
//! the same connection unless the bad one's answer announced the close; 0 connection errors.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::harness::cluster::{Cluster, Opts, ROOT_TOKEN};
use crate::harness::nodes::Nodes;

/// One answer: its status, whether it announced `Connection: close`, its body.
struct Answer {
    status: u16,
    close: bool,
    body: String,
}

/// Reads one HTTP/1.1 response (a `Content-Length` body or a chunked one) from `s`.
async fn read_answer<S: AsyncRead + Unpin>(s: &mut S) -> std::io::Result<Answer> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf).to_ascii_lowercase();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let header = |name: &str| {
        head.lines().find_map(|l| {
            l.strip_prefix(&format!("{name}:"))
                .map(|v| v.trim().to_string())
        })
    };
    let close = header("connection").is_some_and(|v| v.contains("close"));
    let mut body = Vec::new();
    if let Some(n) = header("content-length").and_then(|v| v.parse::<usize>().ok()) {
        body.resize(n, 0);
        s.read_exact(&mut body).await?;
    } else if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        loop {
            let mut line = Vec::new();
            while !line.ends_with(b"\r\n") {
                s.read_exact(&mut byte).await?;
                line.push(byte[0]);
            }
            let size = usize::from_str_radix(String::from_utf8_lossy(&line).trim(), 16)
                .map_err(|_| std::io::Error::other("bad chunk size"))?;
            let mut chunk = vec![0u8; size + 2];
            s.read_exact(&mut chunk).await?;
            if size == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..size]);
        }
    }
    Ok(Answer {
        status,
        close,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// A TLS connection to `addr`, trusting the cluster's CA.
async fn connect(addr: std::net::SocketAddr, ca: &std::path::Path) -> TlsStream<TcpStream> {
    raftsafe::tls::install_crypto_provider();
    let roots = raftsafe::tls::roots(ca).unwrap();
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    connector.connect(name, tcp).await.unwrap()
}

/// Waits for the server to close `s` (EOF), reading and dropping what it sends.
async fn closed_by_server<S: AsyncRead + Unpin>(s: &mut S) -> bool {
    let mut sink = [0u8; 4096];
    let wait = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match s.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    });
    wait.await.is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_keep_alive_tls_client_survives_every_early_rejection() {
    let c = Cluster::start(Opts::default()).await;
    let leader = c.leader(Duration::from_secs(30)).await;
    let addr = c.api(leader);
    let ca = c.dir.path().join("certs/ca.pem");
    let cl = c.client(leader);
    assert_eq!(
        cl.put("ka/x", &json!({"v": 1}), None).await.unwrap().status,
        200
    );
    let t = cl
        .create_token("ka-reader", &["read:secret"], &["ka/*"], None)
        .await
        .unwrap();
    assert_eq!(t.status, 201, "{:?}", t.body);
    let reader = t.body["token"].as_str().unwrap().to_string();

    let big = "x".repeat(200 * 1024);
    let json_body = format!("{{\"data\": {{\"v\": \"{big}\"}}}}");
    let root = format!("Authorization: Bearer {ROOT_TOKEN}\r\n");
    let as_reader = format!("Authorization: Bearer {reader}\r\n");
    let long_uri = format!("/api/v1/secrets/ka/{}", "y".repeat(70 * 1024));
    let huge_header = format!("X-Filler: {}\r\n", "z".repeat(600 * 1024));
    // (what, the request head after the request line's path, the body, the status wanted)
    let bad: Vec<(&str, String, String, u16)> = vec![
        (
            "401: a body without a token",
            "PUT /api/v1/secrets/ka/x".into(),
            json_body.clone(),
            401,
        ),
        (
            "403: a body without the scope",
            format!("PUT /api/v1/secrets/ka/x\r\n{as_reader}"),
            json_body.clone(),
            403,
        ),
        (
            "405: a method the route lacks",
            format!("PATCH /api/v1/secrets/ka/x\r\n{root}"),
            json_body.clone(),
            405,
        ),
        (
            "400: a body that is not JSON",
            format!("PUT /api/v1/secrets/ka/x\r\n{root}"),
            format!("{{not json {big}"),
            400,
        ),
        (
            "403: Vault's dialect without a token",
            "POST /v1/secret/data/ka/x".into(),
            json_body.clone(),
            403,
        ),
        (
            "414: a URI too long",
            format!("GET {long_uri}\r\n{root}"),
            String::new(),
            414,
        ),
        (
            "431: headers too large",
            format!("GET /api/v1/secrets/ka/x\r\n{root}{huge_header}"),
            String::new(),
            431,
        ),
    ];
    let good = format!("GET /api/v1/secrets/ka/x HTTP/1.1\r\nHost: {addr}\r\n{root}\r\n");

    let mut s = connect(addr, &ca).await;
    let mut errors = Vec::new();
    for (what, head, body, want) in &bad {
        let (line, rest) = head.split_once("\r\n").unwrap_or((head, ""));
        let request = format!(
            "{line} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{rest}\r\n{body}",
            body.len()
        );
        // The server may answer and close before reading the whole body: a failed write is
        // not an error if the answer said so.
        let _ = s.write_all(request.as_bytes()).await;
        let answer = match read_answer(&mut s).await {
            Ok(a) => a,
            Err(e) => {
                errors.push(format!("{what}: no answer ({e})"));
                s = connect(addr, &ca).await;
                continue;
            }
        };
        // 414 and 431 come from the HTTP parser: the exact code may be 400 there.
        let status_ok =
            answer.status == *want || (matches!(want, 414 | 431) && answer.status == 400);
        assert!(status_ok, "{what}: got {} {}", answer.status, answer.body);
        if answer.close {
            assert!(
                closed_by_server(&mut s).await,
                "{what}: announced Connection: close but kept the connection open"
            );
            s = connect(addr, &ca).await;
        }
        if let Err(e) = s.write_all(good.as_bytes()).await {
            errors.push(format!("{what}: the next request could not be sent ({e})"));
            s = connect(addr, &ca).await;
            continue;
        }
        match read_answer(&mut s).await {
            Ok(a) if a.status == 200 => {}
            Ok(a) => errors.push(format!(
                "{what}: the next request got {} {}",
                a.status, a.body
            )),
            Err(e) => {
                errors.push(format!(
                    "{what}: the next request on the connection failed ({e})"
                ));
                s = connect(addr, &ca).await;
            }
        }
    }
    assert!(
        errors.is_empty(),
        "connection errors after rejected requests:\n{}",
        errors.join("\n")
    );
}
