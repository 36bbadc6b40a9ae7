//! Malformed, oversized, invalid, unsigned, replayed and unpaid transactions
//! are refused with their codes, and nothing already committed is lost.

use replicode_abci::account::Signer;
use replicode_abci::codes::Code;
use replicode_abci::limits;
use replicode_abci::tx::{Body, Install, Kill, Stdin, Tx};
use replicode_e2e::{
    broadcast_raw, install_and_spawn, rpc_post, send_line, wait_committed, Testnet,
};

#[test]
fn bad_transactions_get_their_codes_and_nothing_is_lost() -> anyhow::Result<()> {
    let net = Testnet::up(4)?;
    let acct = net.account("default")?;
    let port = net.nodes[1].rpc_port;
    let pid = install_and_spawn(port, &acct, "kv_server", &["/kv.log"])?;
    assert_eq!(send_line(port, &acct, pid, "SET keep me")?.stdout(), "OK\n");

    let check = |bytes: Vec<u8>| broadcast_raw(port, &bytes).map(|(code, log, _)| (code, log));
    // Refused at CheckTx, so none of these uses the account's sequence.
    let probe = |tx: Tx| {
        let signer = acct.lock().unwrap_or_else(|p| p.into_inner());
        let sequence = signer.sequence;
        signer.sign_with(tx, sequence).to_bytes()
    };
    let (code, _) = check(vec![0xde, 0xad, 0xbe, 0xef])?;
    assert_eq!(code, Code::Malformed.value());
    let mut v1 = Tx::new(Body::Kill(Kill { pid }));
    v1.version = 1;
    let (code, log) = check(v1.to_bytes())?;
    assert_eq!(code, Code::UnsupportedVersion.value());
    assert!(
        log.contains("--from"),
        "the refusal says how to sign: {log}"
    );
    let unsigned = Tx::new(Body::Kill(Kill { pid }));
    assert_eq!(check(unsigned.to_bytes())?.0, Code::BadSignature.value());
    let big = probe(Tx::new(Body::Stdin(Stdin {
        pid,
        data: vec![b'x'; limits::MAX_STDIN_BYTES + 1],
        eof: false,
    })));
    assert_eq!(check(big)?.0, Code::TooLarge.value());
    let (code, log) = check(probe(Tx::new(Body::Stdin(Stdin {
        pid: 999,
        data: b"GET x\n".to_vec(),
        eof: false,
    }))))?;
    assert_eq!(code, Code::UnknownPid.value());
    assert!(log.contains("999"), "log names the pid: {log}");
    let (code, log) = check(probe(Tx::new(Body::Install(Install {
        path: "/bin/junk".into(),
        wasm: b"not wasm".to_vec(),
    }))))?;
    assert_eq!(code, Code::InvalidProgram.value());
    assert!(log.contains("/bin/junk"), "{log}");
    let (code, _) = check(probe(Tx::new(Body::Install(Install {
        path: "/etc/x".into(),
        wasm: b"\0asm".to_vec(),
    }))))?;
    assert_eq!(code, Code::InvalidField.value());

    // Over the whole-transaction limit (but under CometBFT's own): our code, via POST.
    let huge = probe(Tx::new(Body::Install(Install {
        path: "/bin/huge".into(),
        wasm: vec![0; limits::MAX_TX_BYTES],
    })));
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(huge);
    let v = rpc_post(port, "broadcast_tx_sync", serde_json::json!({ "tx": b64 }))?;
    assert_eq!(
        v["result"]["code"].as_u64(),
        Some(u64::from(Code::TooLarge.value())),
        "{v}"
    );

    // The state survived: the earlier value is there and the server still answers.
    assert_eq!(
        send_line(port, &acct, pid, "GET keep")?.stdout(),
        "VALUE me\n"
    );
    net.verify()?;
    Ok(())
}

/// Issue 12: every transaction runs at most once, only on the chain it was
/// signed for, and only if its signer can pay.
#[test]
fn replays_other_chains_and_unfunded_keys_are_refused() -> anyhow::Result<()> {
    let net = Testnet::up_with_accounts(4, &["poor=250000000"])?;
    let acct = net.account("default")?;
    let poor = net.account("poor")?;
    let port = net.nodes[0].rpc_port;
    let pid = install_and_spawn(port, &acct, "kv_server", &["/kv.log"])?;

    // The exact bytes of a committed input, broadcast again (after CometBFT's
    // cache forgets them, or to another node): refused, not run twice.
    let sequence = acct.lock().unwrap_or_else(|p| p.into_inner()).sequence;
    let once = acct
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .sign_bytes(Tx::new(Body::Stdin(Stdin {
            pid,
            data: b"SET once 1\n".to_vec(),
            eof: false,
        })));
    let (code, log, hash) = broadcast_raw(port, &once)?;
    assert_eq!(code, 0, "{log}");
    assert_eq!(wait_committed(port, &hash)?.stdout(), "OK\n");
    for node in &net.nodes {
        match broadcast_raw(node.rpc_port, &once) {
            Ok((code, log, _)) => assert_eq!(
                code,
                Code::WrongSequence.value(),
                "a replay to {} must be refused: {log}",
                node.name
            ),
            // CometBFT's own cache may answer first; either way it never runs.
            Err(e) => assert!(e.to_string().contains("already exists in cache"), "{e}"),
        }
    }
    // The same input re-signed with the used sequence (new bytes, so no cache
    // hides it): refused by sequence.
    let resigned = acct.lock().unwrap_or_else(|p| p.into_inner()).sign_with(
        Tx::new(Body::Stdin(Stdin {
            pid,
            data: b"SET once 2\n".to_vec(),
            eof: false,
        })),
        sequence,
    );
    let (code, log, _) = broadcast_raw(port, &resigned.to_bytes())?;
    assert_eq!(code, Code::WrongSequence.value(), "{log}");

    // Signed for another chain: the signature does not verify here.
    let mut elsewhere = Signer::new(
        ed25519_consensus::SigningKey::from([1u8; 32]),
        "some-other-chain",
        0,
    );
    let other_chain = elsewhere.sign_bytes(Tx::new(Body::Kill(Kill { pid })));
    assert_eq!(
        broadcast_raw(port, &other_chain)?.0,
        Code::BadSignature.value()
    );

    // A valid signature from a key genesis never funded costs one check.
    let mut stranger = Signer::new(
        ed25519_consensus::SigningKey::from([7u8; 32]),
        &net.chain_id()?,
        0,
    );
    let (code, log, _) = broadcast_raw(
        port,
        &stranger.sign_bytes(Tx::new(Body::Kill(Kill { pid }))),
    )?;
    assert_eq!(code, Code::InsufficientFuel.value(), "{log}");

    // An allowance of 2.5 default transactions: two are admitted, the third
    // is refused at CheckTx.
    for i in 0..2 {
        let r = send_line(port, &poor, pid, &format!("SET poor{i} x"))?;
        assert_eq!(r.code, 0, "{}", r.log);
    }
    let err = send_line(port, &poor, pid, "SET poor2 x").expect_err("no fuel left");
    assert!(
        err.to_string()
            .contains(&format!("code {}", Code::InsufficientFuel.value())),
        "{err}"
    );
    net.verify()?;
    Ok(())
}
