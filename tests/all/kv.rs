//! The kv server under load from several clients at once.

use std::time::Duration;

use replicode_e2e::{install_and_spawn, send_line, Testnet};

#[test]
fn kv_server_200_inputs_from_4_clients_every_answer_right_and_all_agree() -> anyhow::Result<()> {
    // One account per client: an account's transactions are ordered by its
    // sequence, so clients that send at once sign with keys of their own.
    let net = Testnet::up_with_accounts(
        4,
        &[
            "c0=1000000000000",
            "c1=1000000000000",
            "c2=1000000000000",
            "c3=1000000000000",
        ],
    )?;
    let acct = net.account("default")?;
    let port0 = net.nodes[0].rpc_port;
    let pid = install_and_spawn(port0, &acct, "kv_server", &["/kv.log"])?;
    // CheckTx checks the pid against each node's *committed* state: a client of a
    // validator one block behind would be refused (code 6). Wait until every
    // validator is past the block that spawned the server, as a user would.
    let spawned_at = net.height(0)?;
    for i in 0..net.nodes.len() {
        net.wait_height(i, spawned_at + 1, Duration::from_secs(30))?;
    }
    let ports: Vec<u16> = net.nodes.iter().map(|n| n.rpc_port).collect();
    // 4 clients, each talking to its own validator: 25 SET + 25 GET = 50 inputs each.
    let clients: Vec<_> = ports
        .into_iter()
        .enumerate()
        .map(|(c, port)| {
            let acct = net.account(&format!("c{c}"));
            std::thread::spawn(move || -> anyhow::Result<()> {
                let acct = acct?;
                for i in 0..25u64 {
                    let set = send_line(port, &acct, pid, &format!("SET k{c}_{i} v{c}_{i}"))?;
                    anyhow::ensure!(
                        set.code == 0 && set.stdout() == "OK\n",
                        "client {c} SET {i}: {set:?}"
                    );
                    let get = send_line(port, &acct, pid, &format!("GET k{c}_{i}"))?;
                    anyhow::ensure!(
                        get.code == 0 && get.stdout() == format!("VALUE v{c}_{i}\n"),
                        "client {c} GET {i}: {:?} {:?}",
                        get.stdout(),
                        get.log
                    );
                }
                Ok(())
            })
        })
        .collect();
    for client in clients {
        client
            .join()
            .map_err(|_| anyhow::anyhow!("client thread panicked"))??;
    }
    // Every validator at the same height, then the per-height comparison.
    let top = net.height(0)?;
    for i in 0..4 {
        net.wait_height(i, top, Duration::from_secs(30))?;
    }
    let table = net.verify()?;
    assert!(table.contains("all 4 validators agree"), "{table}");
    Ok(())
}

/// CometBFT's socket transport (`--abci socket`) still serves the same app: a
/// node configured either way computes the same thing.
#[test]
fn kv_server_over_the_abci_socket_transport_answers_and_validators_agree() -> anyhow::Result<()> {
    let net = Testnet::up_with_abci(2, "socket")?;
    let acct = net.account("default")?;
    let config = std::fs::read_to_string(net.nodes[0].home.join("config/config.toml"))?;
    assert!(config.contains("abci = \"socket\""), "{config}");
    let port0 = net.nodes[0].rpc_port;
    let pid = install_and_spawn(port0, &acct, "kv_server", &["/kv.log"])?;
    for i in 0..10u64 {
        let set = send_line(port0, &acct, pid, &format!("SET s{i} v{i}"))?;
        anyhow::ensure!(set.code == 0 && set.stdout() == "OK\n", "SET {i}: {set:?}");
        let get = send_line(port0, &acct, pid, &format!("GET s{i}"))?;
        anyhow::ensure!(get.stdout() == format!("VALUE v{i}\n"), "GET {i}: {get:?}");
    }
    let top = net.height(0)?;
    net.wait_height(1, top, Duration::from_secs(30))?;
    let table = net.verify()?;
    assert!(table.contains("all 2 validators agree"), "{table}");
    Ok(())
}
