//! File proofs: a proof from an honest node verifies against the signed header; a
//! node that tampers with the contents or the proof is caught by the client.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use base64::Engine as _;
use replicode_e2e::Testnet;
use serde_json::Value;

const MOTD: &str = "Welcome to RepliCode: every validator computed this file.\n";

#[test]
fn file_proof_verifies_and_tampered_content_or_proof_is_rejected() -> anyhow::Result<()> {
    let net = Testnet::up(4)?;
    let honest = net.run(&[
        "query",
        "--node",
        &net.url(0),
        "file",
        "/etc/motd",
        "--prove",
    ])?;
    assert!(
        honest.status.success(),
        "{}",
        String::from_utf8_lossy(&honest.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&honest.stdout), MOTD);
    assert!(String::from_utf8_lossy(&honest.stderr).contains("verified"));

    for tamper in [Tamper::Contents, Tamper::Proof] {
        let proxy = Proxy::start(net.nodes[0].rpc_port, tamper)?;
        let out = net.run(&[
            "query",
            "--node",
            &proxy.url(),
            "file",
            "/etc/motd",
            "--prove",
        ])?;
        assert!(
            !out.status.success(),
            "{tamper:?} was accepted: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        // Without --prove the lie goes through: the check is what catches it.
        let trusting = net.run(&["query", "--node", &proxy.url(), "file", "/etc/motd"])?;
        if tamper == Tamper::Contents {
            assert_ne!(String::from_utf8_lossy(&trusting.stdout), MOTD);
        }
    }
    Ok(())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tamper {
    Contents,
    Proof,
}

/// A lying RPC node: forwards to a real one, flips a byte in abci_query answers.
struct Proxy {
    port: u16,
}

impl Proxy {
    fn start(upstream: u16, tamper: Tamper) -> anyhow::Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        // The thread ends with the test process; each connection is bounded by timeouts.
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let _ = serve(stream, upstream, tamper);
            }
        });
        Ok(Proxy { port })
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

fn serve(mut client: TcpStream, upstream: u16, tamper: Tamper) -> anyhow::Result<()> {
    client.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let (head_len, body_len) = loop {
        let n = client.read(&mut chunk)?;
        anyhow::ensure!(n > 0, "client closed early");
        buf.extend_from_slice(&chunk[..n]);
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..pos]).to_lowercase();
            let len = head
                .lines()
                .find_map(|l| {
                    l.strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                })
                .unwrap_or(0);
            break (pos + 4, len);
        }
    };
    while buf.len() < head_len + body_len {
        let n = client.read(&mut chunk)?;
        anyhow::ensure!(n > 0, "client closed early");
        buf.extend_from_slice(&chunk[..n]);
    }
    let request: Value = serde_json::from_slice(&buf[head_len..head_len + body_len])?;
    let mut answer = replicode_e2e::rpc_post(
        upstream,
        request["method"].as_str().unwrap_or_default(),
        request["params"].clone(),
    )?;
    answer["id"] = request["id"].clone();
    if request["method"] == "abci_query" {
        let response = &mut answer["result"]["response"];
        let b64 = base64::engine::general_purpose::STANDARD;
        match tamper {
            Tamper::Contents => {
                let mut value = b64.decode(response["value"].as_str().unwrap_or_default())?;
                if let Some(b) = value.first_mut() {
                    *b ^= 0x20;
                }
                response["value"] = Value::String(b64.encode(value));
            }
            Tamper::Proof => {
                // CometBFT's JSON names it proofOps; accept the snake_case spelling too.
                let key = if response.get("proofOps").is_some() {
                    "proofOps"
                } else {
                    "proof_ops"
                };
                let op = &mut response[key]["ops"][0];
                let mut data = b64.decode(op["data"].as_str().unwrap_or_default())?;
                let mid = data.len() / 2;
                if let Some(b) = data.get_mut(mid) {
                    *b ^= 0xff;
                }
                op["data"] = Value::String(b64.encode(data));
            }
        }
    }
    let body = serde_json::to_vec(&answer)?;
    write!(client, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len())?;
    client.write_all(&body)?;
    Ok(())
}
