//! A hostile infinite loop costs its fuel, fails identically everywhere, and the
//! kv server keeps answering.

use replicode_abci::codes::Code;
use replicode_abci::tx::{Body, Install, Spawn};
use replicode_e2e::{guest, install_and_spawn, send_line, submit, Testnet};

#[test]
fn infinite_loop_runs_out_of_fuel_on_every_validator_and_the_server_keeps_answering(
) -> anyhow::Result<()> {
    let net = Testnet::up(4)?;
    let port = net.nodes[0].rpc_port;
    let kv = install_and_spawn(port, "kv_server", &["/kv.log"])?;
    let wasm = std::fs::read(guest("loop")?)?;
    assert_eq!(
        submit(
            port,
            Body::Install(Install {
                path: "/bin/loop".into(),
                wasm
            }),
            7
        )?
        .code,
        0
    );
    let spawned = submit(
        port,
        Body::Spawn(Spawn {
            path: "/bin/loop".into(),
            args: vec![],
            env: vec![],
        }),
        8,
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
    let answer = send_line(port, kv, "SET after loop", 9)?;
    assert_eq!(answer.stdout(), "OK\n");
    net.verify()?;
    Ok(())
}
