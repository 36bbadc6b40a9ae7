//! A hostile infinite loop costs its fuel, fails identically everywhere, and the
//! kv server keeps answering.

use replicode_abci::codes::Code;
use replicode_abci::tx::{Body, Install, Spawn};
use replicode_abci::tx::{Stdin, Tx};
use replicode_e2e::{broadcast_raw, guest, install_and_spawn, send_line, submit, wait_tx, Testnet};

#[test]
fn infinite_loop_runs_out_of_fuel_on_every_validator_and_the_server_keeps_answering(
) -> anyhow::Result<()> {
    let net = Testnet::up(4)?;
    let acct = net.account("default")?;
    let port = net.nodes[0].rpc_port;
    let kv = install_and_spawn(port, &acct, "kv_server", &["/kv.log"])?;
    let wasm = std::fs::read(guest("loop")?)?;
    assert_eq!(
        submit(
            port,
            &acct,
            Body::Install(Install {
                path: "/bin/loop".into(),
                wasm
            })
        )?
        .code,
        0
    );
    let spawned = submit(
        port,
        &acct,
        Body::Spawn(Spawn {
            path: "/bin/loop".into(),
            args: vec![],
            env: vec![],
            public: false,
        }),
    )?;
    assert_eq!(spawned.code, Code::OutOfFuel.value(), "{}", spawned.log);
    let genesis: serde_json::Value = serde_json::from_slice(&std::fs::read(
        replicode_e2e::workspace().join("genesis/app_state.json"),
    )?)?;
    let fuel = genesis["limits"]["fuel_per_tx"]
        .as_u64()
        .unwrap_or_default();
    assert_eq!(
        spawned.gas_used, fuel,
        "the loop burns exactly the per-transaction fuel"
    );
    // The same result on every validator: compare each node's block_results for that height.
    let mut seen = Vec::new();
    for i in 0..net.nodes.len() {
        // Past the block, not at it: /status reports a block once it is stored,
        // a moment before its results are.
        net.wait_height(i, spawned.height + 1, std::time::Duration::from_secs(30))?;
        let r = net.rpc(i, &format!("/block_results?height={}", spawned.height))?;
        seen.push((
            r["result"]["txs_results"].clone(),
            r["result"]["app_hash"].clone(),
        ));
    }
    assert!(
        seen.windows(2).all(|w| w[0] == w[1]),
        "validators disagree: {seen:?}"
    );
    let answer = send_line(port, &acct, kv, "SET after loop")?;
    assert_eq!(answer.stdout(), "OK\n");
    net.verify()?;
    Ok(())
}

/// Issue 11, on one real 4-validator testnet: each hostile input of the classes
/// that once halted or stalled the chain gets its documented code, the chain
/// keeps committing, an honest client's server keeps answering, a validator
/// killed in the middle catches up, and every validator agrees at every height.
#[test]
fn hostile_inputs_get_their_codes_and_the_chain_keeps_committing() -> anyhow::Result<()> {
    use replicode_e2e::rpc_get;
    use std::time::Duration;

    let net = Testnet::up(4)?;
    let acct = net.account("default")?;
    let port = net.nodes[0].rpc_port;
    let kv = install_and_spawn(port, &acct, "kv_server", &["/kv.log"])?;
    let hostile = install_and_spawn(port, &acct, "hostile", &[])?;

    // A guest-made symlink at a program path, then a spawn of it: this once made
    // FinalizeBlock fail on every validator, at every replay. Guests now see
    // `/bin` read-only, so the symlink itself is refused; the spawn path never
    // reads the guest filesystem anyway (the machine tests plant the symlink
    // directly).
    let made = send_line(port, &acct, hostile, "symlink kv_server /bin/evil")?;
    assert!(
        made.stdout().starts_with("err symlink"),
        "{:?}",
        made.stdout()
    );
    let evil = submit(
        port,
        &acct,
        Body::Spawn(Spawn {
            path: "/bin/evil".into(),
            args: vec![],
            env: vec![],
            public: false,
        }),
    )?;
    assert_eq!(evil.code, Code::ProgramNotFound.value(), "{}", evil.log);

    // Host calls priced by the work they do: a 1 GiB writev over one 1 MiB
    // buffer, a write loop, 16 MiB of randomness. Each once cost a sliver of
    // its fuel (and gigabytes of memory); now each runs out of its fuel, on
    // every validator alike, and is rolled back.
    for attack in ["iovbomb 1024 1", "writeloop 1", "random 16"] {
        let r = send_line(port, &acct, hostile, attack)?;
        assert_eq!(r.code, Code::OutOfFuel.value(), "{attack}: {}", r.log);
        assert!(
            r.output.writes.is_empty(),
            "{attack}: a rolled-back input has no output"
        );
    }

    // A validator dies in the middle and comes back.
    net.kill9(3);

    // A sleeper whose wake-up spins: its wake-up runs out of fuel, so it is
    // killed, and the clock keeps moving (it once froze every later block).
    let sleeper = submit(
        port,
        &acct,
        Body::Spawn(Spawn {
            path: "/bin/hostile".into(),
            args: vec![],
            env: vec![],
            public: false,
        }),
    )?;
    assert_eq!(sleeper.code, 0, "{}", sleeper.log);
    let sleeper = sleeper.output.pid;
    let slept = send_line(port, &acct, sleeper, "sleepspin 300")?;
    assert_eq!(
        slept.stdout(),
        "ok sleepspin 300\n",
        "code {} {}: {:?}",
        slept.code,
        slept.log,
        slept.output
    );
    let killed = (0..100).find_map(|_| {
        std::thread::sleep(Duration::from_millis(200));
        let q = rpc_get(
            port,
            &format!("/abci_query?path=%22/proc%22&data=%22{sleeper}%22"),
        )
        .ok()?;
        let value = q["result"]["response"]["value"].as_str()?.to_string();
        use base64::Engine as _;
        let json = base64::engine::general_purpose::STANDARD
            .decode(value)
            .ok()?;
        let info: serde_json::Value = serde_json::from_slice(&json).ok()?;
        (info["state"] == "killed").then_some(info)
    });
    assert!(killed.is_some(), "the spinning sleeper was never killed");
    let before = net.height(0)?;
    net.wait_height(0, before + 3, Duration::from_secs(30))?;

    // All of them at once, an honest input among them, sent without waiting so
    // they share blocks: each still gets its own code.
    let mut signer = acct.lock().unwrap_or_else(|p| p.into_inner());
    let mut line = |pid: u64, text: &str| {
        signer.sign_bytes(Tx::new(Body::Stdin(Stdin {
            pid,
            data: format!("{text}\n").into_bytes(),
            eof: false,
        })))
    };
    let burst = [
        (line(hostile, "iovbomb 1024 1"), Code::OutOfFuel),
        (line(hostile, "random 16"), Code::OutOfFuel),
        (line(kv, "SET mixed yes"), Code::Ok),
        (line(hostile, "writeloop 1"), Code::OutOfFuel),
    ];
    let evil = signer.sign_bytes(Tx::new(Body::Spawn(Spawn {
        path: "/bin/evil".into(),
        args: vec![],
        env: vec![],
        public: false,
    })));
    drop(signer);
    let burst = burst.into_iter().chain([(evil, Code::ProgramNotFound)]);
    let mut sent = Vec::new();
    for (tx, code) in burst {
        let (check, log, hash) = broadcast_raw(port, &tx)?;
        assert_eq!(check, 0, "CheckTx: {log}");
        sent.push((hash, code));
    }
    for (hash, code) in sent {
        let r = wait_tx(port, &hash, Duration::from_secs(60))?;
        let got = r["tx_result"]["code"].as_u64().unwrap_or(0);
        assert_eq!(
            got,
            u64::from(code.value()),
            "{hash}: {}",
            r["tx_result"]["log"]
        );
    }

    // The honest client's server still answers, on every validator's state.
    let answer = send_line(port, &acct, kv, "SET after hostile")?;
    assert_eq!(answer.stdout(), "OK\n");
    net.restart_stopped()?;
    let top = net.height(0)?;
    net.wait_height(3, top, Duration::from_secs(60))?;
    let get = send_line(net.nodes[3].rpc_port, &acct, kv, "GET after")?;
    assert_eq!(get.stdout(), "VALUE hostile\n");
    net.verify()?;
    for i in 0..net.nodes.len() {
        let pid = net
            .pid(i)
            .ok_or_else(|| anyhow::anyhow!("node {i} is not running"))?;
        let rss = rss_bytes(pid)?;
        assert!(
            rss < MAX_VALIDATOR_RSS,
            "validator {i} uses {} MiB, the bound is {} MiB",
            rss >> 20,
            MAX_VALIDATOR_RSS >> 20
        );
    }
    Ok(())
}

/// What a validator may use after the hostile suite (the app process; its
/// cometbft child is separate): wasmtime's reservations are virtual, so
/// resident memory is the guests' memory, the compiled modules and RocksDB's
/// caches.
const MAX_VALIDATOR_RSS: u64 = 1 << 30;

fn rss_bytes(pid: i32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no VmRSS for pid {pid}"))?;
    Ok(kib << 10)
}
