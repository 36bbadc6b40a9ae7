//! Malformed, oversized and invalid transactions are refused with their codes,
//! and nothing already committed is lost.

use replicode_abci::codes::Code;
use replicode_abci::limits;
use replicode_abci::tx::{Body, Install, Kill, Stdin, Tx};
use replicode_e2e::{broadcast_raw, install_and_spawn, rpc_post, send_line, Testnet};

#[test]
fn bad_transactions_get_their_codes_and_nothing_is_lost() -> anyhow::Result<()> {
    let net = Testnet::up(4)?;
    let port = net.nodes[1].rpc_port;
    let pid = install_and_spawn(port, "kv_server", &["/kv.log"])?;
    assert_eq!(send_line(port, pid, "SET keep me", 50)?.stdout(), "OK\n");

    let check = |bytes: Vec<u8>| broadcast_raw(port, &bytes).map(|(code, log, _)| (code, log));
    let (code, _) = check(vec![0xde, 0xad, 0xbe, 0xef])?;
    assert_eq!(code, Code::Malformed.value());
    let mut v2 = Tx::new(Body::Kill(Kill { pid }), 1);
    v2.version = 2;
    assert_eq!(check(v2.to_bytes())?.0, Code::UnsupportedVersion.value());
    let big = Tx::new(
        Body::Stdin(Stdin {
            pid,
            data: vec![b'x'; limits::MAX_STDIN_BYTES + 1],
            eof: false,
        }),
        2,
    );
    assert_eq!(check(big.to_bytes())?.0, Code::TooLarge.value());
    let (code, log) = check(
        Tx::new(
            Body::Stdin(Stdin {
                pid: 999,
                data: b"GET x\n".to_vec(),
                eof: false,
            }),
            3,
        )
        .to_bytes(),
    )?;
    assert_eq!(code, Code::UnknownPid.value());
    assert!(log.contains("999"), "log names the pid: {log}");
    let (code, log) = check(
        Tx::new(
            Body::Install(Install {
                path: "/bin/junk".into(),
                wasm: b"not wasm".to_vec(),
            }),
            4,
        )
        .to_bytes(),
    )?;
    assert_eq!(code, Code::InvalidProgram.value());
    assert!(log.contains("/bin/junk"), "{log}");
    let (code, _) = check(
        Tx::new(
            Body::Install(Install {
                path: "/etc/x".into(),
                wasm: b"\0asm".to_vec(),
            }),
            5,
        )
        .to_bytes(),
    )?;
    assert_eq!(code, Code::InvalidField.value());

    // Over the whole-transaction limit (but under CometBFT's own): our code, via POST.
    let huge = Tx::new(
        Body::Install(Install {
            path: "/bin/huge".into(),
            wasm: vec![0; limits::MAX_TX_BYTES],
        }),
        6,
    );
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(huge.to_bytes());
    let v = rpc_post(port, "broadcast_tx_sync", serde_json::json!({ "tx": b64 }))?;
    assert_eq!(
        v["result"]["code"].as_u64(),
        Some(u64::from(Code::TooLarge.value())),
        "{v}"
    );

    // The state survived: the earlier value is there and the server still answers.
    assert_eq!(send_line(port, pid, "GET keep", 51)?.stdout(), "VALUE me\n");
    net.verify()?;
    Ok(())
}
